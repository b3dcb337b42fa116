"""What FeatureMask and FeaturePadding share: arguments, the training switch, layouts, config."""
import keras
import tensorflow as tf

from fmfp_tf.layers import common


class RandomImageDefense(keras.layers.Layer):
    """A layer that randomises each image while training and is the identity at inference.

    As Keras's image preprocessing layers do, a subclass works in two steps on batched
    channels_last images:
    - `get_random_transformation(images, seed)`: draws everything random into a dict of tensors
      (one entry per image where the draw is per image);
    - `transform_images(images, transformation)`: applies it deterministically, so the same
      transformation gives the same pixels, and a test can pass a hand-made one.
    This class checks arguments and inputs, decides whether the layer is active, handles rank-3
    inputs and channels_first, and draws one fresh stateless seed per call from its
    `SeedGenerator`. A subclass registered with `fmfp_tf.defense_registry.register_layer` becomes
    a `--defense` choice; one with `test_time=True` is evaluated with EOT and refused by export.
    """

    def __init__(self, size, fill="zero", value_range=(0.0, 1.0), seed=None, test_time=False,
                 data_format=None, **kwargs):
        # images keep their own dtype (uint8, float16, ...): no cast to the layer's float dtype
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        name = type(self).__name__
        self.size = common.check_size(size, name)
        self.fill = common.check_fill(fill, name)
        self.value_range = common.check_value_range(value_range, name)
        self.test_time = common.check_bool(test_time, "test_time", name)
        self.data_format = common.check_data_format(data_format, name)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"{name}: seed must be an int or None; got {seed!r}")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        common.check_input_shape(input_shape, self.size, type(self).__name__, self.data_format)
        super().build(input_shape)

    def get_random_transformation(self, images, seed=None):
        """The random draws for batched channels_last `images`, as a dict of tensors. `seed`: a
        (2,) stateless seed; None draws the next one from the layer's generator."""
        raise NotImplementedError

    def transform_images(self, images, transformation):
        """`images` (batched, channels_last) with `transformation` applied; no randomness."""
        raise NotImplementedError

    def _seed(self, seed):
        return self.seed_generator.next() if seed is None else seed

    def call(self, inputs, training=None):
        inputs = tf.convert_to_tensor(inputs)
        name = type(self).__name__
        common.check_input_shape(inputs.shape, self.size, name, self.data_format)
        if not (training or self.test_time):
            return inputs
        common.check_finite_eagerly(inputs, name)
        images, undo = common.to_batched_nhwc(inputs, self.data_format)
        transformation = self.get_random_transformation(images)
        return undo(self.transform_images(images, transformation))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "fill": self.fill, "value_range": self.value_range,
                       "seed": self.seed, "test_time": self.test_time,
                       "data_format": self.data_format})
        return config
