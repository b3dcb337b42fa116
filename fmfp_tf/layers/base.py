"""What every defense layer shares: arguments, seeds, the training rule, layouts, dict inputs."""
import dataclasses
import typing

import keras

# Keras's own base of its image preprocessing layers (RandomErasing, RandomZoom, ...): it gives
# the tf.data mechanism (a layer called inside a tf.data map runs on TensorFlow ops whatever the
# Keras backend is, through `self.backend`), dict inputs and unbatched images. Not public API:
# setup.py pins the Keras versions it is tested with.
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (
    BaseImagePreprocessingLayer,
)

from fmfp_tf import sizes
from fmfp_tf.layers import common
from fmfp_tf.settings import Settings, setting


def _size_text(value):
    """A size as TrainConfig stores it ('20%', '6px'): a unit is required there."""
    return sizes.parse(value, bare="refused").text


def _cli_size(text):
    """--size: a bare number is the paper's z, a percent of the image side."""
    return sizes.parse(text, bare="percent", name="size").text


def _fill(value):
    """The config's fill is what the layer takes (`common.check_fill`)."""
    return common.check_fill(value, "fill")


def _cli_fill(text):
    """A number stays a number (the layers take one); names stay names."""
    try:
        return float(text)
    except ValueError:
        return text


def _options(value):
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(value)
    return dict(value)


def parse_layer_options(texts):
    """('interpolation=nearest', 'value_range=[0, 255]') -> {'interpolation': 'nearest',
    'value_range': [0, 255]}; each value is read as YAML (numbers, lists, true/false)."""
    import yaml

    options = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{text!r}: expected KEY=VALUE, e.g. interpolation=nearest")
        if key.strip() in options:
            raise ValueError(f"{key.strip()} is given twice; give each option once")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"{text!r}: the value is not readable") from None
    return options or None


@dataclasses.dataclass(frozen=True)
class DefenseLayerSettings(Settings):
    """What `fmfp-tf train` gives a defense layer (its group of `config.TrainConfig`): the
    arguments every layer shares. A layer with settings of its own names a subclass as its
    `train_settings`."""

    size: typing.Optional[str] = setting(
        None, "FM square side / FP largest shrink: the paper's z, a percent of the image side "
              "(20 = 20%: 6 px of 32); 6px for pixels, 0.2 for a fraction; required with "
              "--defense mask or padding (or another layer)", coerce=_size_text,
        expected="'20%' (percent of the image side), '6px' (pixels) or a fraction in (0, 1)",
        parse=_cli_size, metavar="SIZE")
    fill: typing.Union[str, float] = setting("zero", "zero, mean, noise or a number",
                                             coerce=_fill,
                                             expected="zero, mean, noise or a number",
                                             parse=_cli_fill, metavar="FILL")
    layer_options: typing.Optional[typing.Dict[str, typing.Any]] = setting(
        None, "another argument of the defense layer, KEY=VALUE (e.g. interpolation=nearest "
              "for padding); repeatable", coerce=_options, expected="a mapping of names to values",
        parse=parse_layer_options, multiple=True, flag="--layer-option", metavar="KEY=VALUE")
    test_time: bool = setting(False, "keep FM/FP active at inference (a randomized defense; "
                                     "evaluate with EOT)")


class RandomImageDefense(BaseImagePreprocessingLayer):
    """A layer that randomises each image while training and is the identity at inference.

    When it acts (the rule is stronger than Keras's random layers, so that a defended model serves
    exactly like an undefended one):
    - `training=True` or `False` passed explicitly (or by `fit`, `predict`, `evaluate`) decides;
    - inside a model or another layer with `training` unset (`model(x)`, an exported SavedModel)
      it is the identity;
    - called on its own with `training` unset (`layer(x)`, `ds.map(layer)`) it transforms, as
      Keras's preprocessing layers do in a data pipeline;
    - `test_time=True` transforms on every call, inference included: a randomized defense, which
      the evaluation attacks with EOT.

    Keras's two steps are public, with Keras's meanings: `get_random_transformation(data,
    training=True, seed=None)` draws everything random into a dict, and
    `transform_images(images, transformation, training=True)` applies it with no randomness, so
    the same transformation gives the same pixels and a test can pass a hand-made one. A
    subclass implements them on one layout only: `draw_transformation(images, seed)` and
    `apply_transformation(images, transformation)` receive batched channels_last float32 images;
    this class checks arguments and inputs, handles dicts ({"images": ...}; other entries pass
    through), unbatched images, channels_first and NumPy inputs, and returns the layer's compute
    dtype (float16 under `mixed_float16`, float32 for uint8 inputs), as Keras's layers do. Written
    with `self.backend` ops (Keras's backend-independent ops, TensorFlow's inside `tf.data`), a
    subclass runs on TensorFlow, JAX and PyTorch. One registered with
    `fmfp_tf.defense_registry.register_layer` becomes a `--defense` choice.
    """

    _USE_BASE_FACTOR = False
    # what `fmfp-tf train` reads for this layer (its flags and config keys)
    train_settings = DefenseLayerSettings

    def __init__(self, size, fill="zero", value_range=(0.0, 1.0), seed=None, test_time=False,
                 data_format=None, **kwargs):
        name = type(self).__name__
        data_format = common.check_data_format(data_format, name)
        super().__init__(data_format=data_format, **kwargs)
        self.size = common.check_size(size, name)
        self.fill = common.check_fill(fill, name)
        self.value_range = common.check_value_range(value_range, name)
        self.test_time = common.check_bool(test_time, "test_time", name)
        if isinstance(seed, keras.random.SeedGenerator):
            # draws continue the caller's generator; the config keeps its initial seed
            self.generator = seed
            self.seed = seed.get_config()["seed"]
        elif seed is None or (isinstance(seed, int) and not isinstance(seed, bool)):
            self.seed = seed
            self.generator = keras.random.SeedGenerator(seed)
        else:
            raise ValueError(f"{name}: seed must be an int, a keras.random.SeedGenerator or "
                             f"None; got {seed!r}")

    # -- what a subclass implements ------------------------------------------------------------

    def draw_transformation(self, images, seed):
        """The transformation (a dict of tensors) of batched channels_last float32 `images`;
        `seed` as Keras's random functions take it (a SeedGenerator or an int): pass it through
        `self._stream(seed, k)` for the k-th draw of one call."""
        raise NotImplementedError

    def apply_transformation(self, images, transformation):
        """Batched channels_last float32 `images` with `transformation` applied."""
        raise NotImplementedError

    # -- Keras's preprocessing-layer interface --------------------------------------------------

    def get_random_transformation(self, data, training=True, seed=None):
        """The random draws for `data` (images, batched or not, or a dict with "images"), as a
        dict of batched channels_last tensors; None when not training. `seed`: None (the layer's
        generator), an int (the same draws every time) or a `keras.random.SeedGenerator`."""
        if not training:
            return None
        images, _ = common.to_batched_nhwc(self._images_of(data), self.data_format, self.backend)
        return self.draw_transformation(images, self._seed_for_draws(seed))

    def transform_images(self, images, transformation, training=True):
        """`images` (batched or not, NumPy or any backend's tensor) with `transformation` applied
        when `training`; returned in the layer's compute dtype."""
        images = self.backend.convert_to_tensor(images)
        if training and transformation is not None:
            nhwc, undo = common.to_batched_nhwc(images, self.data_format, self.backend)
            images = undo(self.apply_transformation(nhwc, transformation))
        return self.backend.cast(images, self.compute_dtype)

    def transform_single_image(self, image, transformation, training=True):
        return self.transform_images(image, transformation, training=training)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        return bounding_boxes

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        return segmentation_masks

    # -- the layer ------------------------------------------------------------------------------

    def build(self, input_shape):
        shape = input_shape.get("images") if isinstance(input_shape, dict) else input_shape
        if shape is not None:
            common.check_input_shape(shape, self.size, type(self).__name__, self.data_format)
        super().build(input_shape)

    def call(self, data, training=None):
        name = type(self).__name__
        images = self._images_of(data)
        common.check_input_shape(tuple(images.shape), self.size, name, self.data_format)
        active = self._is_active(training)
        if active:
            common.check_finite_eagerly(images, name)
        # Keras's base writes the results into the dict it is given: give it a copy
        return super().call(dict(data) if isinstance(data, dict) else data, training=active)

    def _is_active(self, training):
        if self.test_time:
            return True
        if training is not None:
            return bool(training)
        # unset: transform when called on its own (a data pipeline), not inside a model
        return self._get_call_context().entry_layer is self

    def _images_of(self, data):
        if isinstance(data, dict):
            if "images" not in data:
                raise ValueError(f"{type(self).__name__}: a dict input needs an 'images' entry; "
                                 f"got keys {sorted(data)}")
            return data["images"]
        return data

    def _seed_for_draws(self, seed):
        if seed is None:
            return self._get_seed_generator(self.backend._backend)
        if isinstance(seed, keras.random.SeedGenerator) or (
                isinstance(seed, int) and not isinstance(seed, bool)):
            return seed
        raise ValueError(f"{type(self).__name__}: seed must be an int, a SeedGenerator or None; "
                         f"got {seed!r}")

    @staticmethod
    def _stream(seed, stream):
        """The seed of the `stream`-th draw of one call: under an int seed each draw needs its
        own (a generator advances by itself)."""
        return seed + stream if isinstance(seed, int) else seed

    def _uniform(self, shape, seed, stream=0):
        return self.backend.random.uniform(shape, dtype="float32", seed=self._stream(seed, stream))

    def _fill(self, images, seed, stream):
        return common.fill_values(images, self.fill, self.value_range, self._stream(seed, stream),
                                  self.backend)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "fill": self.fill, "value_range": self.value_range,
                       "seed": self.seed, "test_time": self.test_time})
        return config
