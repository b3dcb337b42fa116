"""Models: `build(name, input_shape, num_classes)`; every model outputs logits.

| name | design | for |
| --- | --- | --- |
| dnn1 | plain CNN, 2x2 conv, dense 256 | traffic signs |
| dnn2 | VGG-style with batch norm | traffic signs |
| dnn3 | small ResNet | traffic signs |
| dnn4 | LeNet-5 style | traffic signs |
| facenet | Inception-ResNet embedding + softmax head | faces |
| mtcnn | CNN classifier of MTCNN-aligned faces | faces |
| wrn16_4, wrn28_10 | wide residual networks | robust training (GPU) |
"""
import dataclasses

from fmfp_tf.errors import UsageError
from fmfp_tf.registry import Registry, passes_registrations_on
from fmfp_tf.settings import Settings, setting
from fmfp_tf.models.face_cnn import face_cnn
from fmfp_tf.models.facenet import facenet
from fmfp_tf.models.traffic_signs import dnn1, dnn2, dnn3, dnn4
from fmfp_tf.models.wide_resnet import wrn16_4, wrn28_10

BUILDERS = Registry("model", {
    "dnn1": dnn1,
    "dnn2": dnn2,
    "dnn3": dnn3,
    "dnn4": dnn4,
    "facenet": facenet,
    "mtcnn": face_cnn,
    "wrn16_4": wrn16_4,
    "wrn28_10": wrn28_10,
})
MODELS = tuple(BUILDERS)  # the built-in names; `names()` has the registered ones too


def register(name, builder, replace=False):
    """Adds a model builder `builder(input_shape, num_classes) -> keras.Model` (or
    "module:function") under `name`, for `build`, `--model` and configs; a name another module
    registered is an error unless `replace=True`."""
    return BUILDERS.register(name, builder, replace=replace)


passes_registrations_on(__name__)


def names():
    """Every model name `build` knows, plugins' included."""
    return tuple(BUILDERS)


@dataclasses.dataclass(frozen=True)
class ModelSettings(Settings):
    """Which network a training job builds (the `model` group of `config.TrainConfig`)."""

    model: str = setting("dnn1", "the network", choices=names)


def build(name, input_shape, num_classes):
    """A fresh, functional Keras model `name` for images of `input_shape` (H, W, C).

    Example:

    >>> model = build("dnn1", (32, 32, 3), 43)
    >>> model.output_shape
    (None, 43)
    """
    if name not in BUILDERS:
        raise UsageError(f"unknown model {name!r}; expected one of {', '.join(names())}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"input_shape must be (height, width, channels); got {input_shape!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise UsageError(f"num_classes must be an int >= 2; got {num_classes!r}")
    minimum = 16 if name in ("dnn4",) else 8
    if shape[0] < minimum or shape[1] < minimum:
        raise UsageError(f"model {name} needs images of at least {minimum}x{minimum}; got {shape}")
    return BUILDERS[name](shape, num_classes)


__all__ = ["build", "register", "names", "MODELS", "BUILDERS", "ModelSettings"]
