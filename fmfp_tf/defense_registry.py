"""The defenses `train` knows, derived from two registries: defense layers and adversarial
training methods.

A defense name is `none`, a layer (`mask`), a method (`pgd-at`) or a layer with an online method
(`mask+pgd-at`). Every list of names (config validation, the CLI's choices and help, table files)
is derived here, so adding a defense layer is one file (a `RandomImageDefense` subclass) plus one
line in `LAYERS`, or, from outside the package, one `register_layer` call.

Layers are named by "module:Class" until they are used, so reading the names imports no
TensorFlow (`fmfp-tf --help` stays fast).

Example:

>>> from fmfp_tf import defense_registry
>>> defense_registry.split("mask+pgd-at")
('mask', 'pgd')
>>> "padding+fgsm-at" in defense_registry.names()
True
"""
import dataclasses
import importlib
import inspect
import typing

from fmfp_tf.errors import UsageError

# name -> "module:Class" (built in) or the class itself (registered at run time)
LAYERS = {
    "mask": "fmfp_tf.layers.feature_mask:FeatureMask",
    "padding": "fmfp_tf.layers.feature_padding:FeaturePadding",
}


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


ADVERSARIAL_TRAINING = {
    "fgsm": AdversarialTraining("fgsm", "FGSM examples mixed with clean ones (Goodfellow et al. "
                                        "2015)", "fmfp_tf.training.adversarial:fgsm_examples",
                                clean_weight=0.5),
    "pgd": AdversarialTraining("pgd", "PGD-k examples from a random start (Madry et al. 2018)",
                               "fmfp_tf.training.adversarial:pgd_examples"),
    "fast": AdversarialTraining("fast", "FGSM from a uniform random start, step 1.25 eps "
                                        "(Wong et al. 2020, 'Fast is better than free')",
                                "fmfp_tf.training.adversarial:fast_examples"),
    "cw": AdversarialTraining("cw", "the training set augmented once with C&W L2 examples "
                                    "crafted on the undefended twin"),
}

# the arguments every defense layer takes from TrainConfig's own keys, never from layer_options
# (data_format follows the model, so it is no layer option either)
COMMON_LAYER_ARGUMENTS = ("size", "fill", "seed", "test_time", "name", "data_format")


def resolve(reference):
    """The object a "module:name" string names."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def register_layer(name, layer_class):
    """Adds a defense layer (a `RandomImageDefense` subclass, or "module:Class") under `name`;
    returns `layer_class`, so it can decorate the class."""
    if not isinstance(name, str) or not name or any(c in name for c in "+ ,"):
        raise ValueError(f"defense layer name must be a word without '+', ',' or spaces; got "
                         f"{name!r}")
    if name == "none" or name.endswith("-at"):
        raise ValueError(f"defense layer name {name!r} is reserved")
    if not isinstance(layer_class, str):
        _check_layer_class(name, layer_class)
    LAYERS[name] = layer_class
    return layer_class


def _check_layer_class(name, layer_class):
    from fmfp_tf.layers.base import RandomImageDefense

    if not (inspect.isclass(layer_class) and issubclass(layer_class, RandomImageDefense)):
        raise TypeError(f"defense layer {name!r}: {layer_class!r} is not a RandomImageDefense "
                        "subclass (the base class gives the training switch, test_time, seeds "
                        "and the EOT check)")


def layer_names():
    return tuple(LAYERS)


def layer_class(name):
    """The layer class registered as `name` (imported on first use)."""
    if name not in LAYERS:
        raise UsageError(f"unknown defense layer {name!r}; expected one of "
                         f"{', '.join(LAYERS)}")
    entry = LAYERS[name]
    if isinstance(entry, str):
        entry = resolve(entry)
        _check_layer_class(name, entry)
        LAYERS[name] = entry
    return entry


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
        raise UsageError(f"unknown defense {defense!r}; expected one of {', '.join(names())}")
    return defense
