"""`FeatureMask`: hides one random square of every training image."""
import keras
import tensorflow as tf

from fmfp_tf.layers import common


@keras.saving.register_keras_serializable(package="fmfp_tf")
class FeatureMask(keras.layers.Layer):
    """Feature mask (FM): replaces a random `size` x `size` square of each image by a fill.

    For every image of the batch independently, the square's top-left corner is drawn uniformly
    among the positions that keep the whole square inside the image, and the square is filled in
    all channels. The layer acts only while training (`training=True`); with `training` False or
    None (`model.predict`, `model(x)`, a served SavedModel) it returns its input unchanged, so a
    defended model serves exactly like an undefended one. `test_time=True` keeps it on at
    inference, which turns it into a randomized defense that must be evaluated with EOT.

    Args:
        size: side of the square. An int >= 1 is pixels; a float in (0, 1) is a fraction of the
            shorter image side. Must be smaller than the shorter side.
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

    def __init__(
        self,
        size,
        fill="zero",
        value_range=(0.0, 1.0),
        seed=None,
        test_time=False,
        data_format=None,
        **kwargs,
    ):
        # images keep their own dtype (uint8, float16, ...): no cast to the layer's float dtype
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        name = type(self).__name__
        self.size = common.check_size(size, name)
        self.fill = common.check_fill(fill, name)
        self.value_range = common.check_value_range(value_range, name)
        self.test_time = common.check_bool(test_time, "test_time", name)
        self.data_format = common.check_data_format(data_format, name)
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"{name}: seed must be an int or None; got {seed!r}")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        common.check_input_shape(input_shape, self.size, type(self).__name__, self.data_format)
        super().build(input_shape)

    def call(self, inputs, training=None):
        inputs = tf.convert_to_tensor(inputs)
        name = type(self).__name__
        common.check_input_shape(inputs.shape, self.size, name, self.data_format)
        if not (training or self.test_time):
            return inputs
        common.check_finite_eagerly(inputs, name)
        images, undo = common.to_batched_nhwc(inputs, self.data_format)
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        static_h, static_w = images.shape[1], images.shape[2]
        size = common.size_in_pixels(
            self.size, static_h if static_h is not None else height,
            static_w if static_w is not None else width,
        )
        seed_top, seed_left, seed_fill = common.split_seed(self.seed_generator.next(), 3)
        # maxval is exclusive: corners 0..H-size keep the square inside the image
        top = tf.random.stateless_uniform(
            (batch,), seed_top, minval=0, maxval=height - size + 1, dtype=tf.int32
        )
        left = tf.random.stateless_uniform(
            (batch,), seed_left, minval=0, maxval=width - size + 1, dtype=tf.int32
        )
        rows = tf.range(height)[tf.newaxis, :]
        cols = tf.range(width)[tf.newaxis, :]
        in_rows = (rows >= top[:, tf.newaxis]) & (rows < top[:, tf.newaxis] + size)
        in_cols = (cols >= left[:, tf.newaxis]) & (cols < left[:, tf.newaxis] + size)
        hidden = (in_rows[:, :, tf.newaxis] & in_cols[:, tf.newaxis, :])[..., tf.newaxis]
        fill = common.fill_values(images, self.fill, self.value_range, seed_fill)
        fill = common.cast_like(tf.broadcast_to(fill, tf.shape(images)), images)
        return undo(tf.where(hidden, fill, images))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "size": self.size,
                "fill": self.fill,
                "value_range": self.value_range,
                "seed": self.seed,
                "test_time": self.test_time,
                "data_format": self.data_format,
            }
        )
        return config
