"""Argument checks, layouts and fills shared by the defense layers, with no framework import.

Functions that compute take `ops`: the layer's `self.backend` (Keras's backend modules, which is
TensorFlow's inside a `tf.data` pipeline whatever the Keras backend is).
"""
import numbers

import numpy as np

from fmfp_tf import sizes

FILLS = ("zero", "mean", "noise")
DATA_FORMATS = ("channels_last", "channels_first")


def _is_real_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_size(size, layer):
    """`size`: an int >= 1 (pixels), a float in (0, 1) (fraction of the shorter side), or a string
    such as '20%' or '6px'; returned as the int or float the layer stores."""
    return sizes.parse(size, bare="pixels", name=f"{layer}: size").layer_value


def check_fill(fill, layer):
    """`fill`: 'zero', 'mean', 'noise' or a finite number."""
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(
                f"{layer}: unknown fill {fill!r}; expected one of {', '.join(FILLS)} or a number"
            )
        return fill
    if _is_real_number(fill) and np.isfinite(fill):
        return float(fill)
    raise ValueError(
        f"{layer}: fill must be one of {', '.join(FILLS)} or a finite number; got {fill!r}"
    )


def check_value_range(value_range, layer):
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"{layer}: value_range must be two numbers (low, high); got {value_range!r}"
        ) from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"{layer}: value_range needs finite low < high; got {value_range!r}")
    return (low, high)


def check_data_format(data_format, layer):
    if data_format is None:
        import keras

        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"{layer}: data_format must be one of {', '.join(DATA_FORMATS)}; got {data_format!r}"
        )
    return data_format


def check_bool(value, name, layer):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{layer}: {name} must be True or False; got {value!r}")
    return bool(value)


def spatial_dims(shape, data_format):
    """(height, width) of a rank 3 or 4 shape; entries may be None or scalar tensors."""
    shape = tuple(shape)
    if data_format == "channels_first":
        return shape[-2], shape[-1]
    return shape[-3], shape[-2]


def size_in_pixels(size, height, width, ops=None):
    """Resolves `size` against the shorter side: an int for static sides, else a scalar tensor."""
    if isinstance(size, int):
        return size
    if isinstance(height, int) and isinstance(width, int):
        return max(1, int(round(size * min(height, width))))
    shorter = ops.cast(ops.numpy.minimum(height, width), "float32")
    return ops.numpy.maximum(1, ops.cast(ops.numpy.round(size * shorter), "int32"))


def check_input_shape(shape, size, layer, data_format):
    """Rejects ranks other than 3/4 and sizes that do not fit the image, when the shape is known."""
    rank = len(shape)
    if rank not in (3, 4):
        raise ValueError(
            f"{layer}: expected images of rank 4 (batch, height, width, channels) or 3 (a single "
            f"image); got rank {rank} with shape {tuple(shape)}"
        )
    height, width = spatial_dims(shape, data_format)
    if not (isinstance(height, int) and isinstance(width, int)):
        return
    pixels = size_in_pixels(size, height, width)
    if pixels >= min(height, width):
        raise ValueError(
            f"{layer}: size {size!r} ({pixels} px) must be smaller than the shorter image side "
            f"{min(height, width)} (images are {height}x{width})"
        )


def to_batched_nhwc(images, data_format, ops):
    """(batched channels_last float32 images, undo) where undo restores the layout and rank."""
    unbatched = len(images.shape) == 3
    images = ops.cast(images, "float32")
    if unbatched:
        images = ops.numpy.expand_dims(images, 0)
    if data_format == "channels_first":
        images = ops.numpy.transpose(images, (0, 2, 3, 1))

    def undo(result):
        if data_format == "channels_first":
            result = ops.numpy.transpose(result, (0, 3, 1, 2))
        return ops.numpy.squeeze(result, 0) if unbatched else result

    return images, undo


def fill_values(images, fill, value_range, seed, ops):
    """What a hidden pixel becomes, broadcastable to `images` (batched NHWC float32)."""
    if fill == "zero":
        return ops.convert_to_tensor(0.0, "float32")
    if fill == "mean":
        # each image's own per-channel mean, so the fill carries no information about the region
        return ops.numpy.mean(images, axis=(1, 2), keepdims=True)
    if fill == "noise":
        low, high = value_range
        return ops.random.uniform(ops.shape(images), minval=low, maxval=high, dtype="float32",
                                  seed=seed)
    return ops.convert_to_tensor(fill, "float32")


def check_finite_eagerly(images, layer):
    """A clear error for NaN/inf when values are at hand (in a graph or trace: no check, it would
    cost a device sync)."""
    from fmfp_tf import backend

    if not backend.is_concrete(images):
        return
    values = backend.to_numpy(images)
    if values.dtype.kind not in "iub" and not np.isfinite(values.astype(np.float32)).all():
        raise ValueError(f"{layer}: input images contain NaN or inf values")
