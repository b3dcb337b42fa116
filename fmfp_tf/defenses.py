"""`defend`: puts a defense layer (FeatureMask, FeaturePadding or any registered one) in front of an
existing Keras model."""
import keras

from fmfp_tf import defense_registry
from fmfp_tf.errors import UsageError


def defense_layer(defense, size, **options):
    """The layer registered as `defense` ('mask', 'padding', ...), with its options checked."""
    layer_class = defense_registry.layer_class(defense)
    try:
        return layer_class(size, name=f"feature_{defense}", **options)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def _input_shape(model, input_shape):
    if input_shape is not None:
        return tuple(input_shape)
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        shape = None
    if isinstance(shape, list) or shape is None:
        raise UsageError(
            f"defend(): cannot read one input shape from model {model.name!r}; "
            "pass input_shape=(height, width, channels)"
        )
    return tuple(shape[1:])


def defend(model, defense="mask", size="20%", *, input_shape=None, **options):
    """Returns a new model: `defense` layer right after the input, then `model`.

    The new model calls the original one, so both share every weight: training the defended model
    trains the original too. Works for Sequential, functional and subclassed models whose input
    shape is known (or given as `input_shape`, without the batch axis).

    Args:
        model: a Keras model mapping images to logits or probabilities.
        defense: "mask" (FeatureMask), "padding" (FeaturePadding) or another name registered
            with `fmfp_tf.defense_registry.register_layer`.
        size: the layer's size: an int of pixels, a float fraction of the side in (0, 1), or
            a string such as `"20%"` (percent of the side, the paper's z) or `"6px"`.
        input_shape: needed only when the model does not know its input shape.
        **options: passed to the layer (fill, seed, test_time, value_range, ...).

    Example:

    >>> import keras
    >>> base = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
    ...                          keras.layers.Dense(10)])
    >>> defended = defend(base, "mask", size="20%")
    >>> defended.layers[1].name, defended.layers[1].size
    ('feature_mask', 0.2)
    """
    layer = defense_layer(defense, size, **options)
    shape = _input_shape(model, input_shape)
    try:
        layer.build((None, *shape))
    except ValueError as error:
        raise UsageError(str(error)) from None
    inputs = keras.Input(shape=shape, name="images")
    outputs = model(layer(inputs))
    return keras.Model(inputs, outputs, name=f"{model.name}_{defense}")
