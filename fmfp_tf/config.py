"""Typed, validated configs: YAML files and CLI flags resolve into one `TrainConfig`.

A `TrainConfig` is composed of `Settings` groups, the way `evaluation.AttackSettings` is, each
declared beside what reads it: `data.registry.DataSettings`, `models.ModelSettings`,
`defense_registry.DefenseSettings`, each defense layer's `train_settings`
(`layers.base.DefenseLayerSettings`), each adversarial-training method's groups (named in its
`defense_registry` entry: `OnlineATSettings`, `CWATSettings`, or a plugin's), the robust probe's
`ProbeSettings`, `optimization_registry.OptimisationSettings` and `RuntimeSettings` here. YAML
files, `config.json` and the CLI stay flat, one key each (`at_eps`, `epochs`); `fmfp-tf train`'s
options and checks are derived from the groups.

Unknown keys and wrong types are errors that name the key, the value and what was expected;
YAML is read with `yaml.safe_load` only.
"""
import dataclasses
import hashlib
import json
import os

from fmfp_tf import atomic, budgets, defense_registry, sizes
from fmfp_tf import settings as settings_lib
from fmfp_tf.augmentation_registry import AugmentationSettings
from fmfp_tf.data.registry import DataSettings
from fmfp_tf.defense_registry import DefenseSettings, ProbeSettings
from fmfp_tf.errors import UsageError
from fmfp_tf.models import ModelSettings
from fmfp_tf.optimization_registry import OptimisationSettings
from fmfp_tf.settings import Settings, setting

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
# named here, without TensorFlow, for validation and the CLI's choices; training.precision holds
# what each name does (tests/test_package.py keeps the two in step)
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class RuntimeSettings(Settings):
    """Where and in what precision a training job runs (training.strategies, .precision); the
    strategy changes no weight, so the fingerprint leaves it out."""

    strategy: str = setting("auto", "auto, default, mirrored or multiworker (TF_CONFIG)",
                            choices=STRATEGIES)
    precision: str = setting("auto", "training precision (auto: bfloat16 where the CPU/GPU "
                                     "computes it natively, else float32); the saved model is "
                                     "float32", choices=PRECISIONS)


# every key a fingerprint has hashed since fingerprints began: always in it (reset to its default
# when unread), so old runs and the model cache keep their names; keys that later groups (a
# plugin's method) declare join the fingerprint only in runs that read them
FINGERPRINT_KEYS = (
    "dataset", "data_dir", "image_size", "face_crop", "train_limit", "test_limit",
    "on_bad_image", "model", "defense", "size", "fill", "layer_options", "test_time", "at_eps",
    "at_steps", "at_step_size", "at_clean_fraction", "cw_at_fraction", "cw_at_iterations",
    "probe_images", "overfit_guard", "epochs", "batch_size", "learning_rate", "optimizer",
    "schedule", "warmup_epochs", "weight_decay", "weight_averaging", "ema_decay", "seed",
    "strategy", "precision")
# keys added since, whose default is what every run did before them: left out of the fingerprint
# at that default, so the runs and cached models from before keep their names
LEFT_OUT_AT_DEFAULT = ("augment", "probe_holdout")


def group_classes():
    """{group name: the settings classes in it}, every registered layer's and method's included
    (plugins' too, once imported), each class once."""
    layers = _unique(defense_registry.layer_settings(name)
                     for name in defense_registry.layer_names())
    methods = _unique(group for method in defense_registry.ADVERSARIAL_TRAINING
                      for group in defense_registry.method_settings(method))
    found = {"data": [DataSettings], "model": [ModelSettings],
             "defense": [DefenseSettings, *layers, *methods, ProbeSettings],
             "optimisation": [OptimisationSettings, AugmentationSettings],
             "runtime": [RuntimeSettings]}
    _check_keys([cls for classes in found.values() for cls in classes])
    return found


def setting_groups():
    """Every settings class a training job may read, in the order the CLI lists them."""
    return [cls for classes in group_classes().values() for cls in classes]


def groups():
    """{group name: its flat keys}: the settings by what reads them."""
    return {name: tuple(_keys(classes)) for name, classes in group_classes().items()}


def _unique(items):
    found = []
    for item in items:
        if item not in found:
            found.append(item)
    return found


def _keys(classes):
    return [settings_lib.key(cls, f.name) for cls in classes for f in settings_lib.fields(cls)]


def _check_keys(classes):
    """Two groups may not spell one flat key: one would take the other's values."""
    seen = {}
    for cls in classes:
        for key in _keys([cls]):
            other = seen.setdefault(key, cls)
            if other is not cls:
                raise UsageError(f"settings {cls.__module__}.{cls.__name__} and "
                                 f"{other.__module__}.{other.__name__} both declare {key!r}; "
                                 "give one of them another prefix")


def _fields():
    """{flat key: (class, field)} of every setting."""
    return {settings_lib.key(cls, f.name): (cls, f) for cls in setting_groups()
            for f in settings_lib.fields(cls)}


class TrainConfig:
    """Everything that determines a training run (and so its cache key): one frozen settings
    instance per group class, read as flat keys (`config.epochs`, `config.at_eps`) or by group
    (`config.of(OnlineATSettings).eps`, `config.group("optimisation")`).

    `TrainConfig(**flat keys)`; a key left out takes its default. Values are coerced as YAML and
    JSON give them (an integer for a float, a list for image_size, "8/255" for at_eps) and
    checked; the first problem raises a UsageError naming key and value."""

    def __init__(self, **values):
        fields = _fields()
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UsageError(f"config: unknown key(s) {', '.join(unknown)}; known keys: "
                             f"{', '.join(sorted(fields))}")
        values = dict(values)
        if values.get("size") is not None:
            try:
                values["size"] = sizes.parse(values["size"], bare="refused").text
            except ValueError as error:
                raise UsageError(f"config: {error}") from None
        if isinstance(values.get("at_eps"), str):  # "8/255", as table files and the CLI write it
            values["at_eps"] = budgets.parse_eps(values["at_eps"])
        chosen = {}
        for key, value in values.items():
            cls, field = fields[key]
            chosen.setdefault(cls, {})[field.name] = settings_lib.coerce(value, field)
        instances = {}
        # the defense first: the layer and method groups are read by its name
        for cls in sorted(_unique(cls for cls, _ in fields.values()),
                          key=lambda cls: cls is not DefenseSettings):
            try:
                instances[cls] = settings_lib.build(cls, chosen.get(cls, {}))
            except UsageError as error:
                raise UsageError(f"config: {error}") from None
        object.__setattr__(self, "_instances", instances)
        object.__setattr__(self, "_fields", fields)
        _check_defense_layer(self)
        _check_method_reads(self)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            cls, field = fields[name]
            return getattr(self._instances[cls], field.name)
        raise AttributeError(f"TrainConfig has no setting {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError(f"TrainConfig is frozen; use config.replace({name}=...)")

    def __eq__(self, other):
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        defaults = TrainConfig.defaults()
        changed = {k: v for k, v in self.to_dict().items() if v != _json(defaults[k])}
        return f"TrainConfig({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    @staticmethod
    def keys():
        """Every flat key, in group order."""
        return tuple(_fields())

    @staticmethod
    def defaults():
        return {key: field.default for key, (_, field) in _fields().items()}

    def replace(self, **changes):
        """A new TrainConfig with `changes` applied (checked like any other)."""
        return TrainConfig(**{**self.to_dict(), **changes})

    def of(self, cls):
        """The frozen settings instance of group class `cls`."""
        return self._instances[cls]

    def group(self, name):
        """{key: value} of one group of `groups()`."""
        return {key: getattr(self, key) for key in groups()[name]}

    @property
    def layer_defense(self):
        """The defense layer's registered name ('mask', 'padding', ...) or None."""
        return defense_registry.split(self.defense)[0]

    @property
    def adversarial_training(self):
        """'fgsm', 'pgd', 'cw' or None: the adversarial-training part of the defense."""
        return defense_registry.split(self.defense)[1]

    def read_groups(self):
        """The settings classes this run reads: data, model, defense, the probe, optimisation,
        augmentation and runtime always; its layer's and its method's groups."""
        read = [DataSettings, ModelSettings, DefenseSettings, ProbeSettings,
                OptimisationSettings, AugmentationSettings, RuntimeSettings]
        if self.layer_defense:
            read.append(defense_registry.layer_settings(self.layer_defense))
        if self.adversarial_training:
            read += defense_registry.method_settings(self.adversarial_training)
        return read

    def undefended_twin(self):
        """The same run without any defense: what transfer examples are crafted on, what cw-at
        augments from and what a defended run is compared with. Only the defense's own settings
        change; everything else (data, model, seed, schedule) stays, so the twin is found by
        fingerprint."""
        defaults = TrainConfig.defaults()
        return self.replace(**{key: defaults[key] for key in groups()["defense"]})

    @property
    def size_spec(self):
        """The size as a `sizes.Size` (its value and unit), or None; `size` is its text."""
        return None if self.size is None else sizes.parse(self.size)

    @property
    def layer_size(self):
        """The FM/FP layer's `size` argument (int pixels or float fraction), or None."""
        return None if self.size is None else self.size_spec.layer_value

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
        return None if self.size is None else self.size_spec.pixels(min(self.image_size))

    def to_dict(self):
        """{flat key: value} of every setting, as config.json and YAML files write them."""
        return {key: _json(getattr(self, key)) for key in self._fields}

    def fingerprint(self):
        """A hash of what determines the trained weights: not where the run is written, how many
        devices share it, nor a setting this run never reads (a cw-at budget of an undefended
        run), so two configs that train the same model share a cache entry."""
        return hashlib.sha256(json.dumps(self.weight_settings(), sort_keys=True).encode()
                              ).hexdigest()[:16]

    def weight_settings(self):
        """to_dict() with the data directory made absolute, the strategy dropped and every
        setting that this run's defense, schedule and averaging do not read reset to its
        default (a later group's key left out): what the fingerprint hashes."""
        unread = set(self.unread_settings())
        defaults = TrainConfig.defaults()
        data = {}
        for key, value in self.to_dict().items():
            if key in unread:
                if key in FINGERPRINT_KEYS:
                    data[key] = _json(defaults[key])
            else:
                data[key] = value
        data.pop("strategy")
        for key in LEFT_OUT_AT_DEFAULT:
            if data.get(key) == defaults[key]:
                data.pop(key)
        if self.data_dir is not None:
            data["data_dir"] = os.path.realpath(self.data_dir)
        return data

    def unread_settings(self):
        """The settings this run never reads (a cw-at budget of an undefended run, FM's fill
        without FM): the keys of the groups outside `read_groups()`, the probe's when it is
        off, ema_decay without averaging. The fingerprint resets them, and the CLI refuses them
        when given."""
        read = self.read_groups()
        unread = [key for key, (cls, _) in self._fields.items() if cls not in read]
        method = defense_registry.ADVERSARIAL_TRAINING.get(self.adversarial_training)
        if method is not None and self.probe_size > 0 and "at_eps" in unread:
            unread.remove("at_eps")  # the robust probe of any adversarial training attacks at it
        if self.probe_size == 0:
            unread += ["overfit_guard", "probe_holdout"]
            # probe_images=0 turns off the default probe of online adversarial training: read
            if method is None or not method.online:
                unread.append("probe_images")
        if method is not None:
            unread += [key for key in method.unread if key not in unread]
        for group in read:  # a field whose switch is off (ema_decay without averaging)
            unread += [settings_lib.key(group, name)
                       for name in settings_lib.unread(self.of(group))]
        return unread

    def run_name(self):
        parts = [self.dataset, self.model, self.defense.replace("+", "-")]
        if self.layer_defense and self.size is not None:
            given = self.size.replace("%", "pct")
            parts.append(f"z{given}" if given.endswith("px") else
                         f"z{given}-{self.size_pixels}px")
        parts.append(f"s{self.seed}")
        return "-".join(parts)


def _json(value):
    """A value as JSON writes it (a tuple as a list)."""
    return list(value) if isinstance(value, tuple) else value


def _fail(key, value, expected):
    raise settings_lib.invalid(f"config: {key}", value, expected)


def _check_defense_layer(config):
    """The size a layer needs (and only a layer), its options and its fill: checks across the
    defense, layer and data groups."""
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
    if not isinstance(config.fill, str):
        low, high = (config.layer_options or {}).get("value_range", (0.0, 1.0))
        if not low <= config.fill <= high:
            _fail("fill", config.fill, f"a number inside the pixel range [{low}, {high}] "
                                       "(layer option value_range)")


def _check_method_reads(config):
    """A key of its groups that the method declares it ignores (trades-at's clean weight) is
    refused unless left at its default: a config file could otherwise set it to no effect."""
    method = defense_registry.ADVERSARIAL_TRAINING.get(config.adversarial_training)
    defaults = TrainConfig.defaults()
    for key in method.unread if method is not None else ():
        if getattr(config, key) != defaults[key]:
            _fail(key, getattr(config, key), f"the default ({defaults[key]!r}): defense "
                                             f"{config.defense!r} does not read it")


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
    known = set(TrainConfig.keys())
    unknown = sorted(set(values) - known)
    if unknown:
        if isinstance(values.get("defense"), str):
            # a plugin's method brings its keys: a missing plugin is named by its defense first
            defense_registry.check(values["defense"])
        raise UsageError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            " (a plugin's settings exist once its module is imported: fmfp-tf --plugin MODULE)")
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
