"""Attacks computed in bfloat16, successes checked in float32.

`precision="bfloat16"` runs an attack's forward and backward passes on a bfloat16 twin of the
model (Keras's `mixed_bfloat16`: float32 weights, bfloat16 compute, float32 logits), which is
faster where the hardware computes bfloat16 natively (AMX CPUs, GPUs). Whether an example fools
the model is always decided on the float32 model itself, so no reported adversarial example is
an artefact of rounding; an example the twin takes for a success and the model does not is not
one; then the attack's highest-loss point is checked too. Off by default: on GTSRB dnn1 (300
images, undefended and fast-AT, docs/benchmarks.md) APGD-CE in bfloat16 is within 0.33 points of
float32, but 2.4-3x slower on a CPU without native bfloat16; turn it on where bfloat16 is native.
"""
import weakref

import keras

from fmfp_tf.errors import UsageError

PRECISIONS = ("float32", "bfloat16")
_TWINS = weakref.WeakKeyDictionary()


def check(precision):
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


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
