"""Loading trained models safely: `.keras` files, run directories and SavedModels.

`.keras` files are loaded with Keras's safe mode: a file holding a Lambda layer (arbitrary Python
code) is refused unless the caller passes `unsafe=True`. A SavedModel is a TensorFlow graph that
runs whatever ops it holds (file writes included) once called, so it is code too: refused unless
`unsafe=True`. Nothing here unpickles data.
"""
import os

import numpy as np

from fmfp_tf.errors import ModelError


class SavedModelClassifier:
    """A SavedModel exported by `fmfp_tf.export` used as a callable x -> logits."""

    def __init__(self, path):
        import tensorflow as tf  # SavedModels are TensorFlow's; .keras files need no TensorFlow

        self.path = path
        self.module = tf.saved_model.load(path)
        if not hasattr(self.module, "logits"):
            raise ModelError(
                f"{path}: SavedModel has no `logits` function; export it with `fmfp-tf export`"
            )
        self.name = os.path.basename(os.path.normpath(path))
        spec = self.module.logits.concrete_functions[0].structured_input_signature[0][0]
        self.input_shape = tuple(spec.shape)

    def __call__(self, x, training=False):
        import tensorflow as tf

        return self.module.logits(tf.convert_to_tensor(x, tf.float32))


def resolve_model_path(path):
    """A run directory resolves to its model.keras; files and SavedModel dirs stay as they are."""
    if not os.path.exists(path):
        raise ModelError(f"{path}: model not found")
    if os.path.isdir(path):
        candidate = os.path.join(path, "model.keras")
        if os.path.isfile(candidate):
            return candidate
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return path
        versions = sorted((d for d in os.listdir(path) if d.isdigit()), key=int)
        if versions and os.path.isfile(os.path.join(path, versions[-1], "saved_model.pb")):
            return os.path.join(path, versions[-1])
        raise ModelError(
            f"{path}: a directory without model.keras or saved_model.pb; expected a run "
            "directory, a .keras file or a SavedModel"
        )
    if not path.endswith(".keras"):
        raise ModelError(f"{path}: expected a .keras file, a run directory or a SavedModel")
    return path


def load_model(path, unsafe=False):
    """A Keras model (or SavedModelClassifier) from a .keras file, run dir or SavedModel dir."""
    import keras

    from fmfp_tf import defense_registry

    # every registered defense layer's class is imported, so Keras's serializer knows each one
    # a saved model may hold (one added inside the package as much as FM / FP)
    for name in defense_registry.layer_names():
        defense_registry.layer_class(name)

    resolved = resolve_model_path(path)
    if os.path.isdir(resolved):
        if not unsafe:
            raise ModelError(
                f"{resolved}: refused to load a SavedModel: its graph runs whatever TensorFlow ops "
                "it holds (file writes included); pass unsafe=True only if you trust its author, "
                "or evaluate the run directory or .keras file it was exported from",
                {"unsafe=True": "unsafe"})
        if keras.backend.backend() != "tensorflow":  # its graph runs on TensorFlow only
            raise ModelError(
                f"{resolved}: a SavedModel is a TensorFlow graph; Keras runs on "
                f"{keras.backend.backend()} here: evaluate it with KERAS_BACKEND=tensorflow, or "
                "evaluate the run directory or .keras file it was exported from")
        import tensorflow as tf

        try:
            return SavedModelClassifier(resolved)
        except ModelError:
            raise
        except (OSError, ValueError, IndexError, KeyError, tf.errors.OpError) as error:
            # a truncated variables.data raises IndexError, a missing variables/ an OpError
            cause = " ".join(str(error).split()).split(". ")[0][:200] or type(error).__name__
            raise ModelError(f"{resolved}: cannot load SavedModel: damaged or incomplete "
                             f"({type(error).__name__}: {cause})") from None
    import zipfile

    if not zipfile.is_zipfile(resolved):
        # Keras would say "File not found" of a file that exists but is damaged
        raise ModelError(f"{resolved}: not a valid .keras file (truncated or corrupt; a .keras "
                         "file is a zip archive)")
    try:
        return keras.saving.load_model(resolved, safe_mode=not unsafe, compile=False)
    except ValueError as error:
        message = _root_cause(str(error))
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise ModelError(
                f"{resolved}: refused to load: the file holds a Lambda layer (arbitrary code); "
                "pass unsafe=True only if you trust its author", {"unsafe=True": "unsafe"}) from None
        raise ModelError(f"{resolved}: cannot load model ({_with_hint(message)})") from None
    except (OSError, KeyError, TypeError) as error:
        raise ModelError(f"{resolved}: cannot load model "
                         f"({_with_hint(_root_cause(str(error)))})") from None


def _with_hint(message):
    if "Could not locate class" in message:
        message += ("; a layer from a plugin is known only once its module is imported "
                    "(fmfp-tf --plugin MODULE, or its installed entry point)")
    return message


def _root_cause(message, limit=200):
    """The innermost cause of a Keras deserialization error, on one short line.

    Keras nests one "Exception encountered:" per level, each repeating the full layer config
    (thousands of characters); the last one says what is actually wrong.
    """
    cause = message.split("Exception encountered:")[-1].strip()
    cause = cause.split(" Full object config")[0].split(" Make sure custom")[0]
    cause = " ".join(cause.split())
    return cause if len(cause) <= limit else cause[: limit - 3] + "..."



def check_compatible(model, image_shape, num_classes, model_name="model", dataset="dataset"):
    """A clear error when the model's input shape or class count does not fit the data."""
    input_shape = tuple(getattr(model, "input_shape", (None,) + tuple(image_shape)))[1:]
    if tuple(input_shape) != tuple(image_shape):
        raise ModelError(
            f"{model_name} expects images of shape {tuple(input_shape)} but {dataset} gives "
            f"{tuple(image_shape)}"
        )
    probe = np.zeros((1,) + tuple(image_shape), np.float32)
    outputs = int(model(probe, training=False).shape[-1])
    if outputs != num_classes:
        raise ModelError(
            f"{model_name} has {outputs} output classes but {dataset} has {num_classes}"
        )
