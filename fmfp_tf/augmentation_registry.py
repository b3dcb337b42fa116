"""The training-time augmentations `train --augment` knows, by name, and their settings: one
`Registry` whose entries are "module:function" until used, so config validation and the CLI list
the names without importing TensorFlow. Adding one is one function and one line here, or one
`register_augmentation` call from a plugin.

An entry names two functions, one per training route, each applied to every batch of float
images in [0, 1] before the adversarial examples are crafted (Rebuffi et al. 2021, "Data
augmentation can improve robustness": augmentation helps adversarial training once the weights
are averaged): `loop`, for TensorFlow's train step, takes the config and returns the
`(augment, generator)` of an `augmentation.Augmentation` (a checkpointed generator, so a resumed
run draws what an uninterrupted one would); `batches`, for Keras's `fit` on JAX and PyTorch,
`(images, rng, config) -> images` on NumPy arrays with a NumPy generator seeded per batch
(`training.batches`). An entry without `batches` is TensorFlow's only.

>>> from fmfp_tf import augmentation_registry
>>> augmentation_registry.choices()
('none', 'shift')
"""
import dataclasses
import typing

from fmfp_tf.registry import Registry, passes_registrations_on
from fmfp_tf.settings import Settings, setting



@dataclasses.dataclass(frozen=True)
class AugmentationEntry:
    """One augmentation: `loop` and `batches` as the module says ("module:function" or the
    function itself)."""

    name: str
    loop: typing.Union[str, typing.Callable]
    batches: typing.Union[str, typing.Callable, None] = None


_AUGMENTATION = "fmfp_tf.training.augmentation"
AUGMENTATIONS = Registry("augmentation", {entry.name: entry for entry in (
    AugmentationEntry("shift", f"{_AUGMENTATION}:random_shift", f"{_AUGMENTATION}:shift_batch"),
)}, entry_type=AugmentationEntry)


def register_augmentation(name, builder, batches=None, replace=False):
    """Adds an augmentation `train --augment NAME` builds with `builder(config)` in TensorFlow's
    loop and, given `batches`, applies as `batches(images, rng, config)` on the fit route."""
    AUGMENTATIONS.register(name, AugmentationEntry(name, builder, batches), replace=replace)
    return builder


def choices():
    """'none' and every registered augmentation."""
    return ("none", *AUGMENTATIONS.names())


@dataclasses.dataclass(frozen=True)
class AugmentationSettings(Settings):
    """What the train step does to each batch before it is attacked and learned (the
    `optimisation` group of `config.TrainConfig`); unread, and out of the fingerprint, when
    `augment` is none, so the runs before it keep their names."""

    augment: str = setting("none", "training-time augmentation: none, or shift (each image "
                                   "moved by up to --augment-shift pixels, edges reflected)",
                           choices=choices)
    augment_shift: int = setting(3, "largest shift of --augment shift, in pixels", minimum=1,
                                 maximum=16, unread_when=("augment", "none"))


passes_registrations_on(__name__)
