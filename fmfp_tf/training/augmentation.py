"""The augmentations `augmentation_registry` names. For the TensorFlow train step (`loop`): each a
callable on a batch of float images, drawing from a `tf.random.Generator` the loop checkpoints
(`loop._Checkpoints`), so a run stopped mid-epoch resumes with the draws it would have made. For
Keras's `fit` on JAX and PyTorch (`batches`): the same transformation on a NumPy batch, drawing
from the generator `training.batches` seeds per (run seed, epoch, batch). TensorFlow is imported
only by the loop's functions."""
import dataclasses
import typing

import numpy as np

from fmfp_tf import augmentation_registry, registry
from fmfp_tf.errors import UsageError


@dataclasses.dataclass
class Augmentation:
    """`augment(x) -> x'` inside the compiled train step; `generator` is checkpointed."""

    augment: typing.Callable
    generator: typing.Any  # a tf.random.Generator

    def __call__(self, x):
        return self.augment(x)


def build(config):
    """The config's `Augmentation`, or None for augment = none."""
    if config.augment == "none":
        return None
    entry = augmentation_registry.AUGMENTATIONS[config.augment]
    return Augmentation(*registry.resolve(entry.loop)(config))


def random_shift(config):
    """(augment, generator): each image moved by its own whole-pixel offset in
    [-augment_shift, augment_shift] along each axis, the border filled by reflection (pad and
    crop, as on CIFAR-10 since Zagoruyko & Komodakis 2016; no flips: a mirrored sign is another
    sign)."""
    import tensorflow as tf

    pixels = config.augment_shift
    generator = tf.random.Generator.from_seed(config.seed + 104729)

    def augment(x):
        return shifted(x, generator.uniform([tf.shape(x)[0], 2], 0, 2 * pixels + 1,
                                            dtype=tf.int32), pixels)

    return augment, generator


def shifted(x, offsets, pixels):
    """`x` (N, H, W, C) reflect-padded by `pixels` and cropped back to H x W at `offsets` (N, 2)
    (row, column of the crop's corner in the padded image; `pixels`, `pixels` is no shift)."""
    import tensorflow as tf

    _check_shift(x.shape, pixels)
    padded = tf.pad(x, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]], mode="REFLECT")
    rows = offsets[:, :1] + tf.range(tf.shape(x)[1])[None, :]
    cols = offsets[:, 1:] + tf.range(tf.shape(x)[2])[None, :]
    picked = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(picked, cols, axis=2, batch_dims=1)


def shift_batch(images, rng, config):
    """The fit route's shift: `images` (N, H, W, C, NumPy) each moved by its own offset in
    [-augment_shift, augment_shift] drawn from `rng`, reflect-padded and cropped as `shifted`."""
    pixels = config.augment_shift
    _check_shift(images.shape, pixels)
    count, height, width = images.shape[:3]
    offsets = rng.integers(0, 2 * pixels + 1, size=(count, 2))
    padded = np.pad(images, [(0, 0), (pixels, pixels), (pixels, pixels), (0, 0)], mode="reflect")
    rows = offsets[:, :1] + np.arange(height)[None, :]
    cols = offsets[:, 1:] + np.arange(width)[None, :]
    return padded[np.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _check_shift(shape, pixels):
    if pixels >= min(shape[1], shape[2]):
        raise UsageError(f"augment_shift = {pixels} is invalid; expected fewer pixels than the "
                         f"image's side ({shape[1]} x {shape[2]})")
