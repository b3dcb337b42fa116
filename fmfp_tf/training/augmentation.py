"""The augmentations `augmentation_registry` names, as the TensorFlow train step runs them: each a
callable on a batch of float images, drawing from a `tf.random.Generator` the loop checkpoints
(`loop._Checkpoints`), so a run stopped mid-epoch resumes with the draws it would have made."""
import dataclasses
import typing

import tensorflow as tf

from fmfp_tf import augmentation_registry
from fmfp_tf.errors import UsageError


@dataclasses.dataclass
class Augmentation:
    """`augment(x) -> x'` inside the compiled train step; `generator` is checkpointed."""

    augment: typing.Callable
    generator: tf.random.Generator

    def __call__(self, x):
        return self.augment(x)


def build(config):
    """The config's `Augmentation`, or None for augment = none."""
    if config.augment == "none":
        return None
    builder = augmentation_registry.AUGMENTATIONS[config.augment]
    return Augmentation(*builder(config))


def random_shift(config):
    """(augment, generator): each image moved by its own whole-pixel offset in
    [-augment_shift, augment_shift] along each axis, the border filled by reflection (pad and
    crop, as on CIFAR-10 since Zagoruyko & Komodakis 2016; no flips: a mirrored sign is another
    sign)."""
    pixels = config.augment_shift
    generator = tf.random.Generator.from_seed(config.seed + 104729)

    def augment(x):
        return shifted(x, generator.uniform([tf.shape(x)[0], 2], 0, 2 * pixels + 1,
                                            dtype=tf.int32), pixels)

    return augment, generator


def shifted(x, offsets, pixels):
    """`x` (N, H, W, C) reflect-padded by `pixels` and cropped back to H x W at `offsets` (N, 2)
    (row, column of the crop's corner in the padded image; `pixels`, `pixels` is no shift)."""
    if pixels >= min(x.shape[1], x.shape[2]):
        raise UsageError(f"augment_shift = {pixels} is invalid; expected fewer pixels than the "
                         f"image's side ({x.shape[1]} x {x.shape[2]})")
    padded = tf.pad(x, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]], mode="REFLECT")
    rows = offsets[:, :1] + tf.range(tf.shape(x)[1])[None, :]
    cols = offsets[:, 1:] + tf.range(tf.shape(x)[2])[None, :]
    picked = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(picked, cols, axis=2, batch_dims=1)
