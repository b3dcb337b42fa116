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
    (row, column of the crop's corner in the padded image; `pixels`, `pixels` is no shift).
    On `keras.ops`, so both routes crop with this one function: the loop inside its compiled
    train step, the fit route on its NumPy batches."""
    from keras import ops

    _check_shift(x.shape, pixels)
    padded = ops.pad(x, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]], mode="reflect")
    offsets = ops.cast(offsets, "int32")
    rows = offsets[:, :1] + ops.arange(x.shape[1], dtype="int32")[None, :]
    cols = offsets[:, 1:] + ops.arange(x.shape[2], dtype="int32")[None, :]
    picked = ops.take_along_axis(padded, rows[:, :, None, None], axis=1)
    return ops.take_along_axis(picked, cols[:, None, :, None], axis=2)


def shift_batch(images, rng, config):
    """The fit route's shift: `images` (N, H, W, C, NumPy) each moved by its own offset in
    [-augment_shift, augment_shift] drawn from `rng` (NumPy), by `shifted`."""
    from keras import ops

    pixels = config.augment_shift
    _check_shift(images.shape, pixels)
    offsets = rng.integers(0, 2 * pixels + 1, size=(len(images), 2)).astype(np.int32)
    return np.asarray(ops.convert_to_numpy(shifted(images, offsets, pixels)), images.dtype)


def _check_shift(shape, pixels):
    if pixels >= min(shape[1], shape[2]):
        raise UsageError(f"augment_shift = {pixels} is invalid; expected fewer pixels than the "
                         f"image's side ({shape[1]} x {shape[2]})")
