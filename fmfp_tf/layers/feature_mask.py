"""`FeatureMask`: hides one random square of every training image."""
import keras
import tensorflow as tf

from fmfp_tf.layers import common
from fmfp_tf.layers.base import RandomImageDefense


@keras.saving.register_keras_serializable(package="fmfp_tf")
class FeatureMask(RandomImageDefense):
    """Feature mask (FM): replaces a random `size` x `size` square of each image by a fill.

    For every image of the batch independently, the square's top-left corner is drawn uniformly
    among the positions that keep the whole square inside the image, and the square is filled in
    all channels. The layer acts only while training (`training=True`); with `training` False or
    None (`model.predict`, `model(x)`, a served SavedModel) it returns its input unchanged, so a
    defended model serves exactly like an undefended one. `test_time=True` keeps it on at
    inference, which turns it into a randomized defense that must be evaluated with EOT.

    Args:
        size: side of the square. An int >= 1 is pixels; a float in (0, 1) is a fraction of the
            shorter image side; the strings `"20%"` (the paper's z, a percent of the side) and
            `"6px"` say the same as the configs and the CLI. Must be smaller than the shorter
            side. A fraction resolves to `round(fraction * side)` pixels, at least 1.
        fill: what hidden pixels become: `"zero"`, `"mean"` (the image's own per-channel mean),
            `"noise"` (uniform in `value_range`) or a number.
        value_range: (low, high) of the pixel values, used by `fill="noise"`. Default (0, 1).
        seed: int or None. The same seed reproduces the same squares.
        test_time: keep the mask on at inference too. Default False.
        data_format: `"channels_last"` (default from `keras.config.image_data_format()`) or
            `"channels_first"`.

    Input: a batch (rank 4) or a single image (rank 3) of any float or integer dtype.
    Output: same shape and dtype.

    Example:

    >>> import numpy as np
    >>> layer = FeatureMask(size=2, seed=0)
    >>> images = np.ones((4, 8, 8, 3), "float32")
    >>> out = layer(images, training=True)
    >>> int((out.numpy() == 0).sum(axis=(1, 2, 3))[0])  # 2 * 2 pixels x 3 channels
    12
    >>> bool((layer(images).numpy() == images).all())  # identity at inference
    True
    """

    def get_random_transformation(self, images, seed=None):
        """{"top", "left"}: each image's square corner (int32, (batch,)); "size": its side in
        pixels; "fill": what hidden pixels become (float32, broadcastable to the images)."""
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        static_h, static_w = images.shape[1], images.shape[2]
        size = common.size_in_pixels(
            self.size, static_h if static_h is not None else height,
            static_w if static_w is not None else width,
        )
        seed_top, seed_left, seed_fill = common.split_seed(self._seed(seed), 3)
        # maxval is exclusive: corners 0..H-size keep the square inside the image
        top = tf.random.stateless_uniform(
            (batch,), seed_top, minval=0, maxval=height - size + 1, dtype=tf.int32
        )
        left = tf.random.stateless_uniform(
            (batch,), seed_left, minval=0, maxval=width - size + 1, dtype=tf.int32
        )
        return {"top": top, "left": left, "size": size,
                "fill": common.fill_values(images, self.fill, self.value_range, seed_fill)}

    def transform_images(self, images, transformation):
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        top = tf.convert_to_tensor(transformation["top"], tf.int32)[:, tf.newaxis]
        left = tf.convert_to_tensor(transformation["left"], tf.int32)[:, tf.newaxis]
        size = transformation["size"]
        rows = tf.range(height)[tf.newaxis, :]
        cols = tf.range(width)[tf.newaxis, :]
        in_rows = (rows >= top) & (rows < top + size)
        in_cols = (cols >= left) & (cols < left + size)
        hidden = (in_rows[:, :, tf.newaxis] & in_cols[:, tf.newaxis, :])[..., tf.newaxis]
        fill = tf.broadcast_to(tf.cast(transformation["fill"], tf.float32), tf.shape(images))
        return tf.where(hidden, common.cast_like(fill, images), images)
