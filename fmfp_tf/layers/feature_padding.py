"""`FeaturePadding`: shrinks every training image by a random amount and pads it back."""
import keras
import tensorflow as tf

from fmfp_tf.layers import common
from fmfp_tf.layers.base import RandomImageDefense

INTERPOLATIONS = ("bilinear", "nearest")


def _source_coordinates(out_size, in_size, offset, new_size, interpolation):
    """For each output pixel along one axis: (low index, high index, weight of high, inside box).

    Output pixel i lies in the placed image when offset <= i < offset + new_size; its source
    coordinate uses half-pixel centres, as `tf.image.resize` does.
    """
    i = tf.cast(tf.range(out_size), tf.float32)[tf.newaxis, :]
    offset_f = tf.cast(offset, tf.float32)[:, tf.newaxis]
    scale = tf.cast(in_size, tf.float32) / tf.cast(new_size, tf.float32)[:, tf.newaxis]
    source = (i - offset_f + 0.5) * scale - 0.5
    inside = (i >= offset_f) & (i < offset_f + tf.cast(new_size, tf.float32)[:, tf.newaxis])
    last = tf.cast(in_size - 1, tf.float32)
    if interpolation == "nearest":
        nearest = tf.clip_by_value(tf.floor(source + 0.5), 0.0, last)
        index = tf.cast(nearest, tf.int32)
        return index, index, tf.zeros_like(source), inside
    source = tf.clip_by_value(source, 0.0, last)
    low = tf.floor(source)
    high = tf.minimum(low + 1.0, last)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), source - low, inside


@keras.saving.register_keras_serializable(package="fmfp_tf")
class FeaturePadding(RandomImageDefense):
    """Feature padding (FP): rescales each image down by a random amount and pads it back.

    For every image independently, an amount `d` is drawn uniformly from {0, ..., size}; the image
    is resized (keeping its aspect ratio) so that its shorter side becomes `S - d`, where S is the
    shorter input side, and placed at a uniformly random offset on a canvas of the input's shape
    whose remaining pixels take the fill. The whole image content stays visible, rescaled. As with
    `FeatureMask`, the layer acts only while training unless `test_time=True`; it is the identity
    at inference, so a defended model serves unchanged.

    Args:
        size: the largest shrink. An int >= 1 is pixels; a float in (0, 1) is a fraction of the
            shorter side; `"20%"` and `"6px"` as in the configs and the CLI. Must be smaller
            than the shorter side.
        fill: border value: `"zero"`, `"mean"` (the image's per-channel mean), `"noise"`
            (uniform in `value_range`) or a number.
        value_range: (low, high) of the pixel values, used by `fill="noise"`. Default (0, 1).
        interpolation: `"bilinear"` (default, like `tf.image.resize`) or `"nearest"`.
        seed: int or None. The same seed reproduces the same draws.
        test_time: keep the transformation on at inference too. Default False.
        data_format: `"channels_last"` or `"channels_first"`; default from Keras's config.

    Input: a batch (rank 4) or a single image (rank 3) of any float or integer dtype.
    Output: same shape and dtype.

    Example:

    >>> import numpy as np
    >>> layer = FeaturePadding(size=4, seed=0)
    >>> images = np.ones((2, 16, 16, 1), "float32")
    >>> layer(images, training=True).shape
    TensorShape([2, 16, 16, 1])
    >>> bool((layer(images).numpy() == images).all())  # identity at inference
    True
    """

    def __init__(self, size, fill="zero", value_range=(0.0, 1.0), interpolation="bilinear",
                 seed=None, test_time=False, data_format=None, **kwargs):
        super().__init__(size, fill=fill, value_range=value_range, seed=seed,
                         test_time=test_time, data_format=data_format, **kwargs)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"{type(self).__name__}: interpolation must be one of "
                f"{', '.join(INTERPOLATIONS)}; got {interpolation!r}"
            )
        self.interpolation = interpolation

    def get_random_transformation(self, images, seed=None):
        """{"height", "width"}: each image's new size, {"top", "left"}: where it is placed (int32,
        (batch,) each); "fill": the border (float32, broadcastable to the images)."""
        shape = tf.shape(images)
        static_h, static_w = images.shape[1], images.shape[2]
        height = static_h if static_h is not None else shape[1]
        width = static_w if static_w is not None else shape[2]
        batch = shape[0]
        seed_draw, seed_fill = common.split_seed(self._seed(seed), 2)
        size = common.size_in_pixels(self.size, height, width)
        seed_shrink, seed_top, seed_left = common.split_seed(seed_draw, 3)
        shorter = tf.minimum(height, width)
        shrink = tf.random.stateless_uniform(
            (batch,), seed_shrink, minval=0, maxval=size + 1, dtype=tf.int32
        )
        scale = tf.cast(shorter - shrink, tf.float32) / tf.cast(shorter, tf.float32)
        new_h = tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
        new_w = tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
        # one uniform draw per image, scaled to the number of free positions of that image
        u_top = tf.random.stateless_uniform((batch,), seed_top)
        u_left = tf.random.stateless_uniform((batch,), seed_left)
        top = tf.cast(tf.floor(u_top * tf.cast(height - new_h + 1, tf.float32)), tf.int32)
        left = tf.cast(tf.floor(u_left * tf.cast(width - new_w + 1, tf.float32)), tf.int32)
        return {"height": new_h, "width": new_w, "top": top, "left": left,
                "fill": common.fill_values(images, self.fill, self.value_range, seed_fill)}

    def transform_images(self, images, transformation):
        """Resizes each image to its (height, width) and places it at (top, left)."""
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        new_h, new_w, top, left = (tf.convert_to_tensor(transformation[key], tf.int32)
                                   for key in ("height", "width", "top", "left"))
        r_lo, r_hi, r_w, r_in = _source_coordinates(height, height, top, new_h, self.interpolation)
        c_lo, c_hi, c_w, c_in = _source_coordinates(width, width, left, new_w, self.interpolation)
        x = tf.cast(images, tf.float32)
        # separable interpolation: rows first, then columns, each a batched gather
        r_w = r_w[:, :, tf.newaxis, tf.newaxis]
        rows = (tf.gather(x, r_lo, axis=1, batch_dims=1) * (1.0 - r_w)
                + tf.gather(x, r_hi, axis=1, batch_dims=1) * r_w)
        c_w = c_w[:, tf.newaxis, :, tf.newaxis]
        resized = (tf.gather(rows, c_lo, axis=2, batch_dims=1) * (1.0 - c_w)
                   + tf.gather(rows, c_hi, axis=2, batch_dims=1) * c_w)
        inside = (r_in[:, :, tf.newaxis] & c_in[:, tf.newaxis, :])[..., tf.newaxis]
        fill = tf.cast(transformation["fill"], tf.float32)
        out = tf.where(inside, resized, tf.broadcast_to(fill, tf.shape(x)))
        return common.cast_like(out, images)

    def get_config(self):
        config = super().get_config()
        config["interpolation"] = self.interpolation
        return config
