"""The defenses `train` knows, derived from two registries: defense layers and adversarial
training methods.

A defense name is `none`, a layer (`mask`), a method (`pgd-at`) or a layer with an online method
(`mask+pgd-at`). Every list of names (config validation, the CLI's choices and help, table files)
is derived here, so adding a defense layer is one file (a `RandomImageDefense` subclass) plus one
line in `LAYERS`, or, from a plugin module, one `register_layer` call (`fmfp_tf.plugins`).

Example:

>>> from fmfp_tf import defense_registry
>>> defense_registry.split("mask+pgd-at")
('mask', 'pgd')
>>> "padding+fgsm-at" in defense_registry.names()
True
"""
import dataclasses
import inspect
import typing

from fmfp_tf import budgets
from fmfp_tf import registry as registry_lib
from fmfp_tf.errors import UsageError
from fmfp_tf.registry import Registry, passes_registrations_on
from fmfp_tf.settings import MAX_COUNT, Settings, setting

OVERFIT_GUARDS = ("restore", "warn")
PROBE_HOLDOUTS = ("image", "group")


def _eps(value):
    """A budget as a number; "8/255" as table files and the CLI write it."""
    if isinstance(value, str):
        return budgets.parse_eps(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(value)
    return float(value)


def names_now():
    """The defense names registered now (a function, so that help and checks see plugins')."""
    return names()


@dataclasses.dataclass(frozen=True)
class DefenseSettings(Settings):
    """Which defense a training job trains (the `defense` group of `config.TrainConfig`)."""

    defense: str = setting("none", "none, a defense layer, an adversarial-training method or a "
                                   "layer with an online method (mask+pgd-at)", choices=names_now)


@dataclasses.dataclass(frozen=True)
class OnlineATSettings(Settings):
    """What the online methods (fgsm-at, pgd-at, fast-at, nfgsm-at, trades-at, mart-at) read: the
    budget and the inner attack's steps (keys `at_eps`, `at_steps`, ...)."""

    prefix: typing.ClassVar[str] = "at"
    eps: float = setting(8 / 255, "adversarial-training budget, e.g. 8/255 (pixels in [0, 1])",
                         above=0, maximum=1, coerce=_eps,
                         expected="a number in (0, 1] (pixels are in [0, 1])", parse=_eps,
                         metavar="EPS", shown="8/255")
    steps: int = setting(7, "the inner attack's steps (pgd-at, trades-at, mart-at)", minimum=1,
                         maximum=MAX_COUNT)
    step_size: typing.Optional[float] = setting(
        None, "the inner attack's step (default: 2.5 eps / steps for pgd-at, trades-at and "
              "mart-at, 1.25 eps for fast-at, eps for nfgsm-at; fgsm-at takes none)",
        above=0, maximum=1)
    clean_fraction: typing.Optional[float] = setting(
        None, "weight of the clean loss (default per method: 0.5 for fgsm-at, else 0)",
        minimum=0, below=1)


@dataclasses.dataclass(frozen=True)
class CWATSettings(Settings):
    """What cw-at reads (keys `cw_at_fraction`, `cw_at_iterations`)."""

    prefix: typing.ClassVar[str] = "cw_at"
    fraction: float = setting(0.2, "share of the training set augmented with C&W examples",
                              above=0, maximum=1)
    iterations: int = setting(50, "C&W iterations per example", minimum=1, maximum=MAX_COUNT)


@dataclasses.dataclass(frozen=True)
class ProbeSettings(Settings):
    """The robust probe and the catastrophic-overfitting guard (training.robustness_probe)."""

    probe_images: typing.Optional[int] = setting(
        None, "held-out training images attacked (FGSM, PGD-10) after every epoch; default 512 "
              "under online adversarial training, 0 to turn off", minimum=0)
    overfit_guard: str = setting("restore", "after a catastrophic-overfitting collapse: restore "
                                            "the best PGD epoch or only warn",
                                 choices=OVERFIT_GUARDS)
    probe_holdout: str = setting(
        "image", "how the probe leaves training: seeded images, or whole groups of near-copies "
                 "(GTSRB's sign tracks: 4 frames of each probed, all of it out of training)",
        choices=PROBE_HOLDOUTS)


@dataclasses.dataclass(frozen=True)
class TradesSettings(Settings):
    """What trades-at reads beside the online methods' budget and steps (key `trades_beta`)."""

    prefix: typing.ClassVar[str] = "trades"
    beta: float = setting(6.0, "weight of KL(clean || adversarial) beside the clean "
                               "cross-entropy (Zhang et al. 2019: 6 at 8/255)", above=0,
                          maximum=1000)


@dataclasses.dataclass(frozen=True)
class MartSettings(Settings):
    """What mart-at reads beside the online methods' budget and steps (key `mart_beta`)."""

    prefix: typing.ClassVar[str] = "mart"
    beta: float = setting(6.0, "weight of KL(clean || adversarial) x (1 - clean probability of "
                               "the label) beside the boosted cross-entropy (Wang et al. 2020: "
                               "6 at 8/255)", above=0, maximum=1000)


_ONLINE = (OnlineATSettings,)


@dataclasses.dataclass(frozen=True)
class AdversarialTraining:
    """One adversarial-training method. Online methods craft examples against the current
    weights at every step (`perturbation`: "module:function" building the
    `training.adversarial.Perturbation` from (config, model)), so they compose with a defense
    layer, which is part of the model being attacked. cw-at instead augments the data set once
    from the undefended twin (`perturbation` None).

    `settings`: the settings groups the method reads (classes or "module:Class"), whose keys
    become config keys and `fmfp-tf train` flags; None: the online methods' shared group
    (`OnlineATSettings`) for an online method, none for an offline one. `unread`: keys of those
    groups the method ignores (TRADES has no clean weight): refused when given, and out of the
    fingerprint.

    `keras_examples`: "module:function" crafting the method's examples on `keras.ops`,
    `(settings, model, x, y, seed_generator) -> x_adv` (settings: `AdversarialFitSettings`), for
    `training.keras_fit.AdversarialModel`, so the method trains through `fit` on every Keras
    backend (`KERAS_BACKEND=jax fmfp-tf train`); None: TensorFlow's loop only. `keras_loss`:
    for a method with an objective of its own (TRADES), "module:function" of
    `(settings, y, clean_logits, adversarial_logits) -> per-example loss`."""

    name: str
    description: str
    perturbation: typing.Optional[str] = None
    clean_weight: float = 0.0  # default weight of the clean loss (config: at_clean_fraction)
    settings: typing.Optional[typing.Tuple[typing.Union[type, str], ...]] = None
    unread: typing.Tuple[str, ...] = ()
    keras_examples: typing.Optional[str] = None
    keras_loss: typing.Optional[str] = None

    @property
    def online(self):
        return self.perturbation is not None

    def setting_groups(self):
        groups = self.settings if self.settings is not None else (
            _ONLINE if self.online else ())
        return tuple(registry_lib.resolve(group) for group in groups)


def _check_layer_name(name):
    if any(c in name for c in "+ ,"):
        raise ValueError(f"defense layer name must be a word without '+', ',' or spaces; got "
                         f"{name!r}")
    if name == "none" or name.endswith("-at"):
        raise ValueError(f"defense layer name {name!r} is reserved")


def _check_layer_class(name, layer_class):
    from fmfp_tf.layers.base import RandomImageDefense

    if not (inspect.isclass(layer_class) and issubclass(layer_class, RandomImageDefense)):
        raise TypeError(f"defense layer {name!r}: {layer_class!r} is not a RandomImageDefense "
                        "subclass (the base class gives the training switch, test_time, seeds "
                        "and the EOT check)")


# "module:Class" until used, so listing the names imports no framework
LAYERS = Registry("defense layer", {
    "mask": "fmfp_tf.layers.feature_mask:FeatureMask",
    "padding": "fmfp_tf.layers.feature_padding:FeaturePadding",
}, check=_check_layer_class, check_name=_check_layer_name)

_ADVERSARIAL = "fmfp_tf.training.adversarial"
_FIT = "fmfp_tf.training.keras_fit"
# what the fgsm, fast and nfgsm steps never read: refused when set, out of the fingerprint
_ONE_STEP = ("at_steps",)
ADVERSARIAL_TRAINING = Registry("adversarial-training method", {method.name: method for method in (
    AdversarialTraining("fgsm", "FGSM examples mixed with clean ones (Goodfellow et al. 2015)",
                        f"{_ADVERSARIAL}:fgsm_examples", clean_weight=0.5,
                        unread=(*_ONE_STEP, "at_step_size"),
                        keras_examples=f"{_FIT}:fgsm_examples"),
    AdversarialTraining("pgd", "PGD-k examples from a random start (Madry et al. 2018)",
                        f"{_ADVERSARIAL}:pgd_examples", keras_examples=f"{_FIT}:pgd_examples"),
    AdversarialTraining("fast", "FGSM from a uniform random start, step 1.25 eps (Wong et al. "
                                "2020, 'Fast is better than free')",
                        f"{_ADVERSARIAL}:fast_examples", unread=_ONE_STEP,
                        keras_examples=f"{_FIT}:fast_examples"),
    AdversarialTraining("nfgsm", "FGSM of step eps from noise in the 2 eps-ball, not projected "
                                 "(de Jorge et al. 2022, N-FGSM)",
                        f"{_ADVERSARIAL}:noisy_fgsm_examples", unread=_ONE_STEP,
                        keras_examples=f"{_FIT}:nfgsm_examples"),
    AdversarialTraining("trades", "clean cross-entropy plus trades_beta x KL(clean || "
                                  "adversarial), the adversarial point maximising the KL by "
                                  "at_steps signed steps (Zhang et al. 2019, TRADES)",
                        f"{_ADVERSARIAL}:trades_examples",
                        settings=(OnlineATSettings, TradesSettings),
                        unread=("at_clean_fraction",),
                        keras_examples=f"{_FIT}:trades_examples",
                        keras_loss=f"{_FIT}:trades_loss"),
    AdversarialTraining("mart", "boosted cross-entropy on PGD examples plus mart_beta x "
                                "KL(clean || adversarial) weighted by 1 - the clean probability "
                                "of the label (Wang et al. 2020, MART)",
                        f"{_ADVERSARIAL}:mart_examples",
                        settings=(OnlineATSettings, MartSettings),
                        unread=("at_clean_fraction",),
                        keras_examples=f"{_FIT}:mart_examples",
                        keras_loss=f"{_FIT}:mart_loss"),
    AdversarialTraining("cw", "the training set augmented once with C&W L2 examples crafted on "
                              "the undefended twin", settings=(CWATSettings,)),
)}, entry_type=AdversarialTraining)

# the arguments every defense layer takes from TrainConfig's own keys, never from layer_options
# (data_format follows the model, so it is no layer option either)
COMMON_LAYER_ARGUMENTS = ("size", "fill", "seed", "test_time", "name", "data_format")


def register_layer(name, layer_class, replace=False):
    """Adds a defense layer (a `RandomImageDefense` subclass, or "module:Class") under `name`;
    returns `layer_class`, so it can decorate the class. A name another module registered is
    an error unless `replace=True`."""
    return LAYERS.register(name, layer_class, replace=replace)


def register_method(method, replace=False):
    """Adds an `AdversarialTraining` method (its defense name is NAME-at); returns it. A name
    another module registered is an error unless `replace=True`."""
    return ADVERSARIAL_TRAINING.register(method.name, method, replace=replace)


passes_registrations_on(__name__)


def layer_names():
    return tuple(LAYERS)


def layer_settings(name):
    """The settings group `fmfp-tf train` reads for layer `name` (its class's
    `train_settings`)."""
    return layer_class(name).train_settings


def method_settings(method):
    """The settings groups adversarial-training method `method` ('pgd', ...) reads."""
    return ADVERSARIAL_TRAINING[method].setting_groups()


def layer_class(name):
    """The layer class registered as `name` (imported on first use)."""
    return LAYERS[name]


def layer_options(name):
    """The keyword arguments of layer `name` that `layer_options` may set (its own ones, such as
    FP's interpolation, and value_range / data_format of the base class)."""
    cls = layer_class(name)
    names = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass.__module__.startswith("keras"):
            continue
        for parameter in inspect.signature(klass.__init__).parameters.values():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                names.add(parameter.name)
    return tuple(sorted(names - {"self", *COMMON_LAYER_ARGUMENTS}))


def names():
    """Every defense name: none, each layer, each method, each layer with each online method."""
    methods = [f"{m}-at" for m in ADVERSARIAL_TRAINING]
    composed = [f"{layer}+{m.name}-at" for layer in LAYERS
                for m in ADVERSARIAL_TRAINING.values() if m.online]
    return ("none", *LAYERS, *methods, *composed)


def split(defense):
    """(layer name or None, adversarial-training method or None) of a defense name."""
    check(defense)
    head, _, tail = defense.partition("+")
    if defense == "none":
        return None, None
    if head in LAYERS:
        return head, (tail[:-3] if tail else None)
    return None, head[:-3]


def check(defense):
    if defense not in names():
        raise UsageError(f"unknown defense {defense!r}; expected one of {', '.join(names())} "
                         "(a plugin's defenses exist once its module is imported: fmfp-tf "
                         "--plugin MODULE)")
    return defense
