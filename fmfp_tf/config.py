"""Typed, validated configs: YAML files and CLI flags resolve into one `TrainConfig`.

Unknown keys and wrong types are errors that name the key, the value and what was expected;
YAML is read with `yaml.safe_load` only.
"""
import dataclasses
import hashlib
import json
import os
import typing

from fmfp_tf import sizes
from fmfp_tf.errors import UsageError

DEFENSES = ("none", "mask", "padding", "fgsm-at", "pgd-at", "cw-at", "mask+pgd-at",
            "padding+pgd-at")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
FACE_CROPS = ("auto", "none", "center", "mtcnn")


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a training run (and so its cache key)."""

    dataset: str = "synthetic"
    data_dir: typing.Optional[str] = None
    model: str = "dnn1"
    defense: str = "none"
    # FM square / FP largest shrink, stored as '20%' or '6px' (see fmfp_tf.sizes). Given in Python,
    # an int is pixels and a float a fraction; in YAML and the CLI a bare number is a percent.
    size: typing.Optional[str] = None
    fill: typing.Union[str, float] = "zero"
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    image_size: typing.Tuple[int, int] = (32, 32)
    face_crop: str = "auto"
    train_limit: typing.Optional[int] = None
    test_limit: typing.Optional[int] = None
    on_bad_image: str = "fail"
    strategy: str = "auto"
    test_time: bool = False
    # adversarial training (fgsm-at, pgd-at, cw-at and the combinations)
    at_eps: float = 8 / 255
    at_steps: int = 7
    at_step_size: typing.Optional[float] = None  # default 2.5 * eps / steps (Madry et al.)
    at_clean_fraction: typing.Optional[float] = None  # weight of the clean loss; default per method
    cw_at_fraction: float = 0.2  # share of the training set augmented with C&W examples
    cw_at_iterations: int = 50

    def __post_init__(self):
        validate(self)

    @property
    def layer_defense(self):
        """'mask', 'padding' or None: the FM/FP part of the defense."""
        head = self.defense.split("+")[0]
        return head if head in ("mask", "padding") else None

    @property
    def adversarial_training(self):
        """'fgsm', 'pgd', 'cw' or None: the adversarial-training part of the defense."""
        tail = self.defense.split("+")[-1]
        return tail[:-3] if tail.endswith("-at") else None

    @property
    def layer_size(self):
        """The FM/FP layer's `size` argument (int pixels or float fraction), or None."""
        return None if self.size is None else sizes.parse(self.size).layer_value

    @property
    def size_pixels(self):
        """The size in pixels of the model input, or None."""
        return None if self.size is None else sizes.parse(self.size).pixels(min(self.image_size))

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    def fingerprint(self):
        """A hash of what determines the trained weights (not where the run is written)."""
        data = self.to_dict()
        data.pop("strategy")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def run_name(self):
        parts = [self.dataset, self.model, self.defense.replace("+", "-")]
        if self.layer_defense and self.size is not None:
            given = self.size.replace("%", "pct")
            parts.append(f"z{given}" if given.endswith("px") else
                         f"z{given}-{self.size_pixels}px")
        parts.append(f"s{self.seed}")
        return "-".join(parts)


def _fail(key, value, expected):
    raise UsageError(f"config: {key} = {value!r} is invalid; expected {expected}")


def _coerce(key, value, annotation):
    """Checks one value against its annotation, accepting ints for floats and lists for tuples."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except UsageError:
                continue
        _fail(key, value, " or ".join(getattr(a, "__name__", str(a)) for a in args))
    if origin in (tuple, typing.Tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            _fail(key, value, f"a list of {len(args)} values")
        return tuple(_coerce(key, v, a) for v, a in zip(value, args))
    if annotation is bool:
        if not isinstance(value, bool):
            _fail(key, value, "true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            _fail(key, value, "an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, "a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            _fail(key, value, "a string")
        return value
    return value


def validate(config):
    from fmfp_tf.data import DATASETS
    from fmfp_tf.models import MODELS

    if config.size is not None:
        try:
            config.size = sizes.parse(config.size, bare="pixels").text
        except ValueError as error:
            raise UsageError(f"config: {error}") from None
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        setattr(config, field.name, _coerce(field.name, getattr(config, field.name),
                                            hints[field.name]))
    choices = {"dataset": DATASETS, "model": MODELS, "defense": DEFENSES,
               "strategy": STRATEGIES, "face_crop": FACE_CROPS,
               "on_bad_image": ("fail", "skip")}
    for key, allowed in choices.items():
        if getattr(config, key) not in allowed:
            _fail(key, getattr(config, key), "one of " + ", ".join(allowed))
    if config.layer_defense:
        if config.size is None:
            _fail("size", None, f"a size for defense {config.defense!r} (20 = 20% of the image "
                                "side, 6px, or a fraction such as 0.2)")
        pixels, side = config.size_pixels, min(config.image_size)
        if pixels >= side:
            _fail("size", config.size, f"a square smaller than the image side {side} px "
                                       f"(image_size {config.image_size[0]}x"
                                       f"{config.image_size[1]}; {config.size} is {pixels} px)")
    elif config.size is not None:
        _fail("size", config.size, f"no size: defense {config.defense!r} has no FM/FP layer "
                                   "(use mask, padding or their +pgd-at forms)")
    if isinstance(config.fill, str) and config.fill not in ("zero", "mean", "noise"):
        _fail("fill", config.fill, "zero, mean, noise or a number")
    for key, low in (("epochs", 1), ("batch_size", 1), ("at_steps", 1), ("cw_at_iterations", 1)):
        if getattr(config, key) < low:
            _fail(key, getattr(config, key), f"an integer >= {low}")
    for key in ("train_limit", "test_limit"):
        if getattr(config, key) is not None and getattr(config, key) < 1:
            _fail(key, getattr(config, key), "a positive integer or null")
    if not 0 < config.learning_rate < 10:
        _fail("learning_rate", config.learning_rate, "a number in (0, 10)")
    if not 0 < config.at_eps <= 1:
        _fail("at_eps", config.at_eps, "a number in (0, 1] (pixels are in [0, 1])")
    if config.at_step_size is not None and not 0 < config.at_step_size <= 1:
        _fail("at_step_size", config.at_step_size, "a number in (0, 1]")
    if config.at_clean_fraction is not None and not 0 <= config.at_clean_fraction < 1:
        _fail("at_clean_fraction", config.at_clean_fraction, "a number in [0, 1)")
    if not 0 < config.cw_at_fraction <= 1:
        _fail("cw_at_fraction", config.cw_at_fraction, "a number in (0, 1]")
    if not (4 <= config.image_size[0] <= 1024 and 4 <= config.image_size[1] <= 1024):
        _fail("image_size", config.image_size, "two sides in 4..1024")
    if config.data_dir is None and config.dataset != "synthetic":
        _fail("data_dir", None, f"a directory for dataset {config.dataset!r}")
    if config.data_dir is not None and config.dataset == "synthetic":
        _fail("data_dir", config.data_dir, "none: the synthetic dataset is drawn from the seed "
                                           "and reads no files (pass --dataset too)")


def read_yaml(path):
    """A mapping from a YAML file, read with safe_load; errors name the file."""
    import yaml

    if not os.path.isfile(path):
        raise UsageError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise UsageError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if data is None:
        raise UsageError(f"{path}: the config file is empty; expected a mapping of keys to values "
                         "(see configs/)")
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def train_config(values, source="config", bare_size="percent"):
    """A TrainConfig from a mapping; unknown keys are an error naming them.

    `bare_size`: what a bare number >= 1 under `size` means. 'percent' (the paper's z) for YAML
    files and the CLI; 'pixels' for a run's config.json, which before sizes carried units wrote
    pixels (it now writes '20%' or '6px', so the reading matters only for old runs).
    """
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    values = dict(values)
    if values.get("size") is not None:
        try:
            values["size"] = sizes.parse(values["size"], bare=bare_size).text
        except ValueError as error:
            raise UsageError(f"{source}: {error}") from None
    return TrainConfig(**values)


def resolve_train_config(config_file=None, **overrides):
    """Defaults < YAML file < explicit overrides (None means 'not given').

    A relative `data_dir` is made absolute (from the current directory), so the run's config.json
    still finds the data when the run is evaluated from elsewhere.
    """
    values = read_yaml(config_file) if config_file else {}
    values.update({key: value for key, value in overrides.items() if value is not None})
    if isinstance(values.get("data_dir"), str) and values["data_dir"]:
        values["data_dir"] = os.path.abspath(values["data_dir"])
    return train_config(values, config_file or "config")
