"""Attacks computed in bfloat16, successes checked in float32.

`precision="bfloat16"` runs an attack's forward and backward passes on a bfloat16 twin of the
model (Keras's `mixed_bfloat16`: float32 weights, bfloat16 compute, float32 logits), which is
faster where the hardware computes bfloat16 natively (AMX CPUs, GPUs). Whether an example fools
the model is always decided on the float32 model itself, so no reported adversarial example is
an artefact of rounding; an example the twin takes for a success and the model does not is not
one; then the attack's highest-loss point is checked too.

`resolve("auto")` (the evaluation's default) picks bfloat16 on the TensorFlow backend on a CPU
that computes it natively (AVX512-BF16 or AMX) when Keras sees no accelerator, float32 elsewhere: on an AMD EPYC with
AVX512-BF16 APGD-CE and `autoattack-fast` ran 1.5-1.7x faster in bfloat16 at equal strength
(dnn1 N-FGSM, 300 images: 163 against 164 robust, 160 against 160), while on a CPU without
native bfloat16 they ran 2.4-3x slower (docs/benchmarks.md); on GPUs it is not measured yet.
The functions themselves default to float32.
"""
import weakref

import keras

from fmfp_tf.errors import UsageError

PRECISIONS = ("float32", "bfloat16")
CHOICES = ("auto", *PRECISIONS)  # what an evaluation's setting takes
_TWINS = weakref.WeakKeyDictionary()


def check(precision):
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def resolve(precision):
    """The precision an attack runs in: "auto" is bfloat16 on the TensorFlow backend on a CPU
    with native bfloat16 and no accelerator in Keras's devices (where it was measured faster),
    float32 otherwise; the others as they are."""
    if precision != "auto":
        return check(precision)
    from fmfp_tf import provenance

    if keras.backend.backend() != "tensorflow" or not provenance.native_bfloat16_cpu():
        return "float32"  # XLA's CPU bfloat16 on JAX, and PyTorch's: not measured
    try:
        devices = keras.distribution.list_devices()
    except (NotImplementedError, AttributeError):  # a backend without Keras's device list
        return "float32"
    return "bfloat16" if all(d.lower().startswith("cpu") for d in devices) else "float32"


def crafting_model(model, precision):
    """The model the attack differentiates: `model` itself in float32, its bfloat16 twin else."""
    if check(precision) == "float32":
        return model
    from fmfp_tf.attacks.common import UnitRange

    if isinstance(model, UnitRange):  # a model of another input range: its twin, in that range
        twin = _TWINS.get(model)
        if twin is None:
            twin = _TWINS[model] = UnitRange(crafting_model(model.model, precision), model.low,
                                             model.high)
        return twin
    if not isinstance(model, keras.Model):
        raise UsageError("precision='bfloat16' needs a Keras model (its twin is rebuilt from its "
                         f"config); got {type(model).__name__}")
    twin = _TWINS.get(model)
    if twin is None:
        twin = _TWINS[model] = _bfloat16_twin(model)
    return twin


def _bfloat16_twin(model):
    config = keras.saving.serialize_keras_object(model)
    _retype(config)
    twin = keras.saving.deserialize_keras_object(config)
    twin.set_weights(model.get_weights())
    return twin


def _retype(node):
    """Every float32 layer policy in a serialized model becomes mixed_bfloat16 (inputs stay)."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and node.get("config", {}).get(
                "name") == "float32":
            node["config"]["name"] = "mixed_bfloat16"
        for value in node.values():
            _retype(value)
    elif isinstance(node, list):
        for value in node:
            _retype(value)
