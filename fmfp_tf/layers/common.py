"""Argument checks, layout handling and fills shared by `FeatureMask` and `FeaturePadding`."""
import numbers

import numpy as np
import tensorflow as tf

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
    """(height, width) of a rank 3 or 4 static shape, entries may be None."""
    shape = tuple(shape)
    if data_format == "channels_first":
        return shape[-2], shape[-1]
    return shape[-3], shape[-2]


def size_in_pixels(size, height, width):
    """Resolves `size` against the shorter side; works on ints and on scalar tensors."""
    if isinstance(size, int):
        return size
    shorter = min(height, width) if isinstance(height, int) and isinstance(width, int) else (
        tf.minimum(height, width)
    )
    if isinstance(shorter, int):
        return max(1, int(round(size * shorter)))
    return tf.maximum(1, tf.cast(tf.round(size * tf.cast(shorter, tf.float32)), tf.int32))


def check_input_shape(shape, size, layer, data_format):
    """Rejects ranks other than 3/4 and sizes that do not fit the image, when the shape is known."""
    rank = len(shape)
    if rank not in (3, 4):
        raise ValueError(
            f"{layer}: expected images of rank 4 (batch, height, width, channels) or 3 (a single "
            f"image); got rank {rank} with shape {tuple(shape)}"
        )
    height, width = spatial_dims(shape, data_format)
    if height is None or width is None:
        return
    pixels = size_in_pixels(size, height, width)
    if pixels >= min(height, width):
        raise ValueError(
            f"{layer}: size {size!r} ({pixels} px) must be smaller than the shorter image side "
            f"{min(height, width)} (images are {height}x{width})"
        )


def to_batched_nhwc(images, data_format):
    """Returns (batched channels_last images, undo function)."""
    unbatched = images.shape.rank == 3
    if unbatched:
        images = images[tf.newaxis]
    if data_format == "channels_first":
        images = tf.transpose(images, (0, 2, 3, 1))

    def undo(result):
        if data_format == "channels_first":
            result = tf.transpose(result, (0, 3, 1, 2))
        return result[0] if unbatched else result

    return images, undo


def split_seed(seed, n):
    """n independent stateless seeds from one (2,) seed tensor."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n)
    return [seeds[i] for i in range(n)]


def fill_values(images, fill, value_range, seed):
    """What a hidden pixel becomes, broadcastable to `images` (batched NHWC), in float32."""
    if fill == "zero":
        return tf.zeros((), tf.float32)
    if fill == "mean":
        # each image's own per-channel mean, so the fill carries no information about the region
        return tf.reduce_mean(tf.cast(images, tf.float32), axis=(1, 2), keepdims=True)
    if fill == "noise":
        low, high = value_range
        return tf.random.stateless_uniform(
            tf.shape(images), seed=seed, minval=low, maxval=high, dtype=tf.float32
        )
    return tf.constant(fill, tf.float32)


def cast_like(values, reference):
    """float32 values back to the dtype of `reference`, rounding and clipping integer types."""
    dtype = reference.dtype
    if dtype.is_integer:
        values = tf.clip_by_value(tf.round(values), dtype.min, dtype.max)
    return tf.cast(values, dtype)


def check_finite_eagerly(images, layer):
    """A clear error for NaN/inf when called eagerly; inside a graph the check would cost a sync."""
    if tf.executing_eagerly() and images.dtype.is_floating:
        if not bool(tf.reduce_all(tf.math.is_finite(images))):
            raise ValueError(f"{layer}: input images contain NaN or inf values")
