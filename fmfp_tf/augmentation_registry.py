"""The training-time augmentations `train --augment` knows, by name, and their settings: one
`Registry` whose entries are "module:function" until used, so config validation and the CLI list
the names without importing TensorFlow. Adding one is one function and one line here, or one
`register_augmentation` call from a plugin.

A builder takes the config and returns an `augmentation.Augmentation`: a callable on a batch of
float images in [0, 1] that the train step applies before the adversarial examples are crafted
(Rebuffi et al. 2021, "Data augmentation can improve robustness": augmentation helps adversarial
training once the weights are averaged), with a checkpointed random generator so that a resumed
run draws what an uninterrupted one would.

>>> from fmfp_tf import augmentation_registry
>>> augmentation_registry.choices()
('none', 'shift')
"""
import dataclasses

from fmfp_tf.registry import Registry
from fmfp_tf.settings import Settings, setting

AUGMENTATIONS = Registry("augmentation", {
    "shift": "fmfp_tf.training.augmentation:random_shift",
})


def register_augmentation(name, builder, replace=False):
    """Adds an augmentation `train --augment NAME` builds with `builder(config)`."""
    return AUGMENTATIONS.register(name, builder, replace=replace)


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
