"""Export for TF Serving: `BASE/NAME/VERSION/` SavedModels with a `serving_default` signature.

Signatures:
- `serving_default`: `images` float32 [batch, H, W, C] in [0, 1] (NHWC, any batch size) ->
  `probabilities`, `logits`, `classes` (int64).
- `serving_bytes`: `image_bytes` string [batch] of encoded JPEG/PNG (for HTTP clients) -> the same
  outputs; images are decoded, converted to the model's channels and resized to H x W.
A `logits` function is kept for `fmfp_tf.models_io.load_model`.

FM/FP layers are the identity at inference, so the exported graph holds no random op; a model
whose layers run at test time (`test_time=True`) is refused, since a served randomized defense
would answer differently on every request. The version directory is written to a temporary
directory and renamed into place, so it is never visible half-written, and an existing version
is replaced only with `force`.
"""
import os

import tensorflow as tf

from fmfp_tf import atomic
from fmfp_tf.errors import ModelError, UsageError
from fmfp_tf.models_io import load_model


def _archive(model):
    """A Keras ExportArchive: it tracks the model's variables the way TF1-style loaders (TF Serving,
    `saved_model_cli run`) restore them, which a plain tf.Module holding a Keras 3 model does not."""
    import keras

    height, width, channels = tuple(model.input_shape[1:])
    spec = tf.TensorSpec((None, height, width, channels), tf.float32, name="images")

    def outputs(images):
        logits = model(images, training=False)
        return {"probabilities": tf.nn.softmax(logits), "logits": logits,
                "classes": tf.argmax(logits, axis=-1)}

    def decode(encoded):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        return tf.image.resize(image, (height, width))

    def serve_bytes(image_bytes):
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec(
            (height, width, channels), tf.float32))
        return outputs(images)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", outputs, input_signature=[spec])
    archive.add_endpoint("serving_bytes", serve_bytes, input_signature=[
        tf.TensorSpec((None,), tf.string, name="image_bytes")])
    archive.add_endpoint("logits", lambda images: model(images, training=False),
                         input_signature=[spec])
    return archive


def _has_test_time_layers(model):
    from fmfp_tf.evaluation.threat_models import is_randomised_at_test_time

    return is_randomised_at_test_time(model)


def next_version(base, name):
    folder = os.path.join(base, name)
    if not os.path.isdir(folder):
        return 1
    versions = [int(d) for d in os.listdir(folder) if d.isdigit()]
    return max(versions, default=0) + 1


def export(model_path, base, name, version=None, force=False, unsafe=False):
    """Writes `base/name/version/` and returns its path."""
    if (not name or os.sep in name or name in (".", "..") or not name.isprintable()
            or name != name.strip()):
        raise UsageError(f"name={name!r}: expected a plain directory name (printable, no "
                         "separator, no surrounding spaces)", {f"name={name!r}": "name"})
    # TF Serving reads version folders as int64
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or not 1 <= version < 2**63):
        raise UsageError(f"--version must be a positive integer below 2^63 (TF Serving reads "
                         f"it as int64); got {version!r}")
    model = load_model(model_path, unsafe=unsafe)
    if not hasattr(model, "input_shape") or not hasattr(model, "layers"):
        raise ModelError(f"{model_path}: export needs a Keras model (.keras file or run dir)")
    if len(model.input_shape) != 4:
        raise ModelError(f"{model_path}: expected image input (batch, H, W, C); got "
                         f"{model.input_shape}")
    if _has_test_time_layers(model):
        raise ModelError(
            f"{model_path}: its defense layers run at test time (test_time=True); a served model "
            "must be deterministic. Retrain with test_time=False to export it",
            {"test_time=False": "test_time"})
    # one exporter per model name at a time: two would pick the same next version (a lock of
    # its own: a serving directory is not a run directory, nothing in it is to be cleaned up)
    model_dir = os.path.join(base, name)
    atomic.make_parent(model_dir)
    with atomic.file_lock(os.path.join(model_dir, ".lock"), model_dir, "model directory"):
        version = version or next_version(base, name)
        target = os.path.join(base, name, str(version))
        if os.path.exists(target) and not force:
            raise UsageError(f"{target} already exists; pass force=True to replace it",
                             {"force=True": "force"})
        archive = _archive(model)
        with atomic.atomic_directory(target, overwrite=force) as tmp:
            archive.write_out(tmp, verbose=False)
    return target
