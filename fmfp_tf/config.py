"""Typed, validated configs: YAML files and CLI flags resolve into one `TrainConfig`.

Unknown keys and wrong types are errors that name the key, the value and what was expected;
YAML is read with `yaml.safe_load` only.
"""
import dataclasses
import hashlib
import json
import os
import typing

from fmfp_tf import atomic, budgets, defense_registry, sizes
from fmfp_tf.optimization_registry import OPTIMIZERS, SCHEDULES
from fmfp_tf.errors import UsageError
from fmfp_tf.settings import MAX_COUNT

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
FACE_CROPS = ("auto", "none", "center", "mtcnn")
# named here, without TensorFlow, for validation and the CLI's choices; training.precision holds
# what each name does (tests/test_package.py keeps the two in step); schedules and optimizers
# are registries (optimization_registry)
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
MAX_BATCH_SIZE = 2 ** 20
WEIGHT_AVERAGING = ("none", "ema")
OVERFIT_GUARDS = ("restore", "warn")


# the settings by what reads them; YAML files and CLI flags stay flat, one key each
GROUPS = {
    "data": ("dataset", "data_dir", "image_size", "face_crop", "train_limit", "test_limit",
             "on_bad_image"),
    "model": ("model",),
    "defense": ("defense", "size", "fill", "layer_options", "test_time", "at_eps", "at_steps",
                "at_step_size", "at_clean_fraction", "cw_at_fraction", "cw_at_iterations",
                "probe_images", "overfit_guard"),
    "optimisation": ("epochs", "batch_size", "learning_rate", "optimizer", "schedule",
                     "warmup_epochs", "weight_decay", "weight_averaging", "ema_decay", "seed"),
    "runtime": ("strategy", "precision"),
}


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a training run (and so its cache key), in the groups of
    `GROUPS`: `config.group("optimisation")` is what the optimiser and schedule read."""

    # data: fmfp_tf.data
    dataset: str = "synthetic"
    data_dir: typing.Optional[str] = None
    image_size: typing.Tuple[int, int] = (32, 32)
    face_crop: str = "auto"
    train_limit: typing.Optional[int] = None
    test_limit: typing.Optional[int] = None
    on_bad_image: str = "fail"
    # model: fmfp_tf.models
    model: str = "dnn1"
    # defense: the layer (FM/FP) and the adversarial training, fmfp_tf.defenses / .training
    defense: str = "none"
    # FM square / FP largest shrink, stored as '20%' or '6px' (see fmfp_tf.sizes); given with a
    # unit or as a fraction (in YAML and the CLI a bare number is a percent)
    size: typing.Optional[str] = None
    fill: typing.Union[str, float] = "zero"
    # further arguments of the defense layer, e.g. {"interpolation": "nearest"} for padding
    layer_options: typing.Optional[typing.Dict[str, typing.Any]] = None
    test_time: bool = False
    at_eps: float = 8 / 255  # a number or a fraction written as "8/255"
    at_steps: int = 7
    at_step_size: typing.Optional[float] = None  # default 2.5 * eps / steps (Madry et al.)
    at_clean_fraction: typing.Optional[float] = None  # weight of the clean loss; default per method
    cw_at_fraction: float = 0.2  # share of the training set augmented with C&W examples
    cw_at_iterations: int = 50
    # held-out training images attacked after every epoch (FGSM, PGD-10); None: 512 under
    # online adversarial training, none otherwise; 0 turns the probe off
    probe_images: typing.Optional[int] = None
    overfit_guard: str = "restore"  # restore the best PGD epoch after a collapse, or only warn
    # optimisation: fmfp_tf.training.schedules, .averaging, .loop
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 1e-3  # the peak rate under a schedule
    optimizer: str = "adam"  # adam, adamw or sgd (momentum 0.9, Nesterov)
    schedule: str = "constant"  # constant, cosine (with warm-up) or one-cycle
    warmup_epochs: float = 0.0  # cosine only
    weight_decay: float = 0.0  # adamw and sgd (decoupled)
    weight_averaging: str = "none"  # none or ema: the saved model is the average
    ema_decay: float = 0.999
    seed: int = 0
    # runtime: fmfp_tf.training.strategies, .precision
    strategy: str = "auto"
    # auto: bfloat16 where the CPU or GPU computes it natively, else float32 (training.precision)
    precision: str = "auto"

    def __post_init__(self):
        validate(self)

    def group(self, name):
        """{key: value} of one group of `GROUPS`."""
        return {key: getattr(self, key) for key in GROUPS[name]}

    @property
    def layer_defense(self):
        """The defense layer's registered name ('mask', 'padding', ...) or None."""
        return defense_registry.split(self.defense)[0]

    @property
    def adversarial_training(self):
        """'fgsm', 'pgd', 'cw' or None: the adversarial-training part of the defense."""
        return defense_registry.split(self.defense)[1]

    def undefended_twin(self):
        """The same run without any defense: what transfer examples are crafted on, what cw-at
        augments from and what a defended run is compared with. Only the defense's own settings
        change; everything else (data, model, seed, schedule) stays, so the twin is found by
        fingerprint."""
        defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
        return dataclasses.replace(self, **{key: defaults[key] for key in GROUPS["defense"]})

    @property
    def layer_size(self):
        """The FM/FP layer's `size` argument (int pixels or float fraction), or None."""
        return None if self.size is None else sizes.parse(self.size).layer_value

    @property
    def probe_size(self):
        """Held-out images of the robust probe: probe_images, or 512 under online adversarial
        training when not given."""
        if self.probe_images is not None:
            return self.probe_images
        method = defense_registry.ADVERSARIAL_TRAINING.get(self.adversarial_training)
        return 512 if method is not None and method.online else 0

    @property
    def face_crop_used(self):
        """The face crop applied: 'auto' resolves to the dataset's default (mtcnn for faces)."""
        from fmfp_tf.data import registry

        return registry.face_crop_for(self.dataset, self.face_crop)

    @property
    def size_pixels(self):
        """The size in pixels of the model input, or None."""
        return None if self.size is None else sizes.parse(self.size).pixels(min(self.image_size))

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    def fingerprint(self):
        """A hash of what determines the trained weights: not where the run is written, how many
        devices share it, nor a setting this run never reads (a cw-at budget of an undefended
        run), so two configs that train the same model share a cache entry."""
        return hashlib.sha256(json.dumps(self.weight_settings(), sort_keys=True).encode()
                              ).hexdigest()[:16]

    def weight_settings(self):
        """to_dict() with the data directory made absolute, the strategy dropped and every
        setting that this run's defense, schedule and averaging do not read reset to its
        default: what the fingerprint hashes."""
        data = self.to_dict()
        data.pop("strategy")
        if self.data_dir is not None:
            data["data_dir"] = os.path.realpath(self.data_dir)
        unread = self.unread_settings()
        defaults = TrainConfig.__dataclass_fields__
        for key in unread:
            default = defaults[key].default
            data[key] = list(default) if isinstance(default, tuple) else default
        return data

    def unread_settings(self):
        """The settings this run's defense, schedule and averaging never read (a cw-at budget of
        an undefended run, FM's fill without FM): the fingerprint resets them, and the CLI
        refuses them when given."""
        data = self.to_dict()
        unread = []
        if self.layer_defense is None:
            unread += ["size", "fill", "layer_options", "test_time"]
        method = defense_registry.ADVERSARIAL_TRAINING.get(self.adversarial_training)
        if method is None or not method.online:
            # the robust probe of any adversarial training attacks at at_eps
            probe_reads_eps = method is not None and self.probe_size > 0
            unread += [key for key in data if key.startswith("at_")
                       and not (key == "at_eps" and probe_reads_eps)]
        if method is None or method.online:
            unread += [key for key in data if key.startswith("cw_at_")]
        if self.probe_size == 0:
            unread.append("overfit_guard")
            # probe_images=0 turns off the default probe of online adversarial training: read
            if method is None or not method.online:
                unread.append("probe_images")
        if self.weight_averaging == "none":
            unread.append("ema_decay")
        return unread

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
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            _fail(key, value, "a mapping of names to values")
        return dict(value)
    if annotation is typing.Any:
        return value
    if annotation is str:
        if not isinstance(value, str):
            _fail(key, value, "a string")
        return value
    return value


def validate(config):
    """Coerces each value to its type, then checks choices, the defense's size and fill, ranges
    and the data directory; the first problem raises a UsageError naming key and value."""
    if config.size is not None:
        try:
            config.size = sizes.parse(config.size, bare="refused").text
        except ValueError as error:
            raise UsageError(f"config: {error}") from None
    if isinstance(config.at_eps, str):  # "8/255", as table files and the CLI write it
        config.at_eps = budgets.parse_eps(config.at_eps)
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        setattr(config, field.name, _coerce(field.name, getattr(config, field.name),
                                            hints[field.name]))
    _check_choices(config)
    _check_defense_layer(config)
    _check_ranges(config)
    _check_data_dir(config)


def _check_choices(config):
    from fmfp_tf.data import registry as datasets
    from fmfp_tf.models import names as model_names

    choices = {"dataset": datasets.names(), "model": model_names(),
               "defense": defense_registry.names(), "strategy": STRATEGIES, "face_crop": FACE_CROPS,
               "precision": PRECISIONS, "optimizer": OPTIMIZERS.names(),
               "schedule": SCHEDULES.names(),
               "weight_averaging": WEIGHT_AVERAGING, "overfit_guard": OVERFIT_GUARDS,
               "on_bad_image": ("fail", "skip")}
    for key, allowed in choices.items():
        if getattr(config, key) not in allowed:
            _fail(key, getattr(config, key), "one of " + ", ".join(allowed))


def _check_defense_layer(config):
    """The size a layer needs (and only a layer), its options and its fill."""
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
    if config.layer_options:
        _check_layer_options(config)
    if isinstance(config.fill, str) and config.fill not in ("zero", "mean", "noise"):
        _fail("fill", config.fill, "zero, mean, noise or a number")
    if not isinstance(config.fill, str):
        low, high = (config.layer_options or {}).get("value_range", (0.0, 1.0))
        if not low <= config.fill <= high:
            _fail("fill", config.fill, f"a number inside the pixel range [{low}, {high}] "
                                       "(layer option value_range)")


def _check_ranges(config):
    # a batch beyond int32 tensors, and beyond any memory, is refused too
    for key, low, high in (("epochs", 1, 100_000), ("batch_size", 1, MAX_BATCH_SIZE),
                           ("at_steps", 1, MAX_COUNT), ("cw_at_iterations", 1, MAX_COUNT)):
        # above the bound a value is mistyped (--epochs 1e23 would run for ever)
        if not low <= getattr(config, key) <= high:
            _fail(key, getattr(config, key), f"an integer in {low}..{high}")
    for key in ("train_limit", "test_limit"):
        if getattr(config, key) is not None and getattr(config, key) < 1:
            _fail(key, getattr(config, key), "a positive integer or null")
    if not 0 < config.learning_rate < 10:
        _fail("learning_rate", config.learning_rate, "a number in (0, 10)")
    if not 0 <= config.warmup_epochs < config.epochs:
        _fail("warmup_epochs", config.warmup_epochs, f"a number in [0, epochs = {config.epochs})")
    if config.warmup_epochs and config.schedule != "cosine":
        _fail("warmup_epochs", config.warmup_epochs, "0 unless schedule is cosine (one-cycle "
                                                     "has its own rise)")
    if not 0 < config.ema_decay < 1:
        _fail("ema_decay", config.ema_decay, "a number in (0, 1)")
    if config.weight_averaging == "none" and config.ema_decay != 0.999:
        _fail("ema_decay", config.ema_decay, "the default unless weight_averaging is ema")
    if config.probe_images is not None and config.probe_images < 0:
        _fail("probe_images", config.probe_images, "an integer >= 0 or null")
    if not 0 <= config.weight_decay < 1:
        _fail("weight_decay", config.weight_decay, "a number in [0, 1)")
    if config.weight_decay and config.optimizer == "adam":
        _fail("weight_decay", config.weight_decay, "0 with optimizer adam (use adamw or sgd for "
                                                   "decoupled weight decay)")
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


def _check_data_dir(config):
    from fmfp_tf.data import registry as datasets

    needs_data_dir = datasets.get(config.dataset).needs_data_dir
    if config.data_dir is None and needs_data_dir:
        _fail("data_dir", None, f"a directory for dataset {config.dataset!r}")
    if config.data_dir is not None and not needs_data_dir:
        _fail("data_dir", config.data_dir, f"none: the {config.dataset} dataset is drawn from the "
                                           "seed and reads no files (set dataset=NAME too)")


def _check_layer_options(config):
    if not config.layer_defense:
        _fail("layer_options", config.layer_options, f"none: defense {config.defense!r} has no "
                                                     "defense layer")
    allowed = defense_registry.layer_options(config.layer_defense)
    unknown = sorted(set(config.layer_options) - set(allowed))
    if unknown:
        _fail("layer_options", config.layer_options,
              f"options of the {config.layer_defense} layer ({', '.join(allowed) or 'none'}); "
              f"unknown: {', '.join(unknown)}")
    from fmfp_tf.defenses import defense_layer

    # building the layer checks the values with the layer's own messages
    try:
        defense_layer(config.layer_defense, config.layer_size, fill=config.fill,
                      **config.layer_options)
    except UsageError as error:
        raise UsageError(f"config: layer_options: {error}") from None


def _strict_loader():
    """yaml's SafeLoader, refusing a key given twice in one mapping (safe_load keeps the last,
    silently)."""
    import yaml

    class StrictSafeLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictSafeLoader


def read_yaml(path):
    """A mapping from a YAML file, read with a safe loader; errors name the file."""
    import yaml

    if not os.path.isfile(path):
        raise UsageError(f"{path}: config file not found" if not os.path.lexists(path) else
                         f"{path}: {atomic.not_a_file(path)}; a config is a YAML file")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_strict_loader())  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        message = " ".join(str(error).split())
        raise UsageError(f"{path}: not valid YAML ({message})") from None
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
