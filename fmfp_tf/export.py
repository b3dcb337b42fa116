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


class _Servable(tf.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        shape = tuple(model.input_shape[1:])
        self.height, self.width, self.channels = shape
        spec = tf.TensorSpec((None,) + shape, tf.float32, name="images")
        self.logits = tf.function(self._logits, input_signature=[spec])
        self.serve = tf.function(self._serve, input_signature=[spec])
        self.serve_bytes = tf.function(
            self._serve_bytes,
            input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])

    def _logits(self, images):
        return self.model(images, training=False)

    def _outputs(self, images):
        logits = self.model(images, training=False)
        return {"probabilities": tf.nn.softmax(logits), "logits": logits,
                "classes": tf.argmax(logits, axis=-1)}

    def _serve(self, images):
        return self._outputs(images)

    def _decode(self, encoded):
        image = tf.io.decode_image(encoded, channels=self.channels, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        return tf.image.resize(image, (self.height, self.width))

    def _serve_bytes(self, image_bytes):
        images = tf.map_fn(self._decode, image_bytes,
                           fn_output_signature=tf.TensorSpec(
                               (self.height, self.width, self.channels), tf.float32))
        return self._outputs(images)


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
    if not name or os.sep in name or name in (".", ".."):
        raise UsageError(f"--name must be a plain directory name; got {name!r}")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or version < 1):
        raise UsageError(f"--version must be a positive integer; got {version!r}")
    model = load_model(model_path, unsafe=unsafe)
    if not hasattr(model, "input_shape") or not hasattr(model, "layers"):
        raise ModelError(f"{model_path}: export needs a Keras model (.keras file or run dir)")
    if len(model.input_shape) != 4:
        raise ModelError(f"{model_path}: expected image input (batch, H, W, C); got "
                         f"{model.input_shape}")
    if _has_test_time_layers(model):
        raise ModelError(
            f"{model_path}: its FM/FP layers run at test time (test_time=True); a served model "
            "must be deterministic. Retrain without --test-time to export it")
    version = version or next_version(base, name)
    target = os.path.join(base, name, str(version))
    if os.path.exists(target) and not force:
        raise UsageError(f"{target} already exists; pass --force to replace it")
    servable = _Servable(model)
    signatures = {
        "serving_default": servable.serve.get_concrete_function(),
        "serving_bytes": servable.serve_bytes.get_concrete_function(),
    }
    with atomic.atomic_directory(target, overwrite=force) as tmp:
        tf.saved_model.save(servable, tmp, signatures=signatures)
    return target
