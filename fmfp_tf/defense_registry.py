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

from fmfp_tf.errors import UsageError
from fmfp_tf.registry import Registry, passes_registrations_on


@dataclasses.dataclass(frozen=True)
class AdversarialTraining:
    """One adversarial-training method. Online methods craft examples against the current
    weights at every step (`perturbation`: "module:function" building the
    `training.adversarial.Perturbation` from (config, model)), so they compose with a defense
    layer, which is part of the model being attacked. cw-at instead augments the data set once
    from the undefended twin (`perturbation` None)."""

    name: str
    description: str
    perturbation: typing.Optional[str] = None
    clean_weight: float = 0.0  # default weight of the clean loss (config: at_clean_fraction)

    @property
    def online(self):
        return self.perturbation is not None


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
ADVERSARIAL_TRAINING = Registry("adversarial-training method", {method.name: method for method in (
    AdversarialTraining("fgsm", "FGSM examples mixed with clean ones (Goodfellow et al. 2015)",
                        f"{_ADVERSARIAL}:fgsm_examples", clean_weight=0.5),
    AdversarialTraining("pgd", "PGD-k examples from a random start (Madry et al. 2018)",
                        f"{_ADVERSARIAL}:pgd_examples"),
    AdversarialTraining("fast", "FGSM from a uniform random start, step 1.25 eps (Wong et al. "
                                "2020, 'Fast is better than free')",
                        f"{_ADVERSARIAL}:fast_examples"),
    AdversarialTraining("nfgsm", "FGSM of step eps from noise in the 2 eps-ball, not projected "
                                 "(de Jorge et al. 2022, N-FGSM)",
                        f"{_ADVERSARIAL}:noisy_fgsm_examples"),
    AdversarialTraining("cw", "the training set augmented once with C&W L2 examples crafted on "
                              "the undefended twin"),
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
