"""Training precision: `float32`, `bfloat16` or `float16` (Keras mixed precision), or `auto`.

- `auto` picks bfloat16 where the hardware computes it natively: CPUs with AMX-BF16 or
  AVX512-BF16 (read from /proc/cpuinfo) and GPUs of compute capability 8.0 or more (Ampere,
  Hopper); elsewhere float32. On a Xeon with both, dnn1 trained at about twice the float32 speed
  (benchmarks/precision.py).
- Mixed precision keeps the weights in float32 and computes the layers in the low precision; the
  loop casts the logits to float32 before the loss, and float16 scales the loss
  (`keras.optimizers.LossScaleOptimizer`) so that small gradients do not underflow.
- Only training runs in the low precision. The saved model is rebuilt in float32 with the trained
  weights, so attacks and evaluation compute logits and input gradients in float32 (a bfloat16
  input gradient, with 8 bits of mantissa, would weaken the attacks) and serving sees float32.
"""
import contextlib

from fmfp_tf import provenance
from fmfp_tf.config import PRECISIONS
from fmfp_tf.errors import UsageError

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def _gpu_supports_bfloat16():
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (8, 0):
            return True
    return False


def _accelerator_capability(backend):
    """The CUDA compute capability of the first GPU JAX or PyTorch sees, or None."""
    if backend == "jax":
        import jax

        for device in jax.devices():
            capability = getattr(device, "compute_capability", None)
            if device.platform == "gpu" and capability:
                return tuple(int(part) for part in str(capability).split(".")[:2])
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return tuple(torch.cuda.get_device_capability(0))
    return None


def resolve(precision):
    """The precision actually used: 'auto' becomes 'bfloat16' or 'float32' on this machine and
    Keras backend. On JAX and PyTorch, auto is bfloat16 only on a GPU of compute capability 8.0
    or more: the CPU speed-up was measured with TensorFlow's oneDNN kernels, not with theirs."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision = {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        capability = _accelerator_capability(backend)
        return "bfloat16" if capability is not None and capability >= (8, 0) else "float32"
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "bfloat16" if _gpu_supports_bfloat16() else "float32"
    return "bfloat16" if provenance.native_bfloat16_cpu() else "float32"


@contextlib.contextmanager
def policy(precision):
    """Keras's global dtype policy set to `precision` (resolved) for the block, then restored."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[resolve(precision)])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def optimizer_for(optimizer, precision):
    """float16 needs loss scaling; the other precisions use `optimizer` as it is."""
    import keras

    if resolve(precision) == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def float32_copy(model, build):
    """`model` rebuilt by `build()` under the float32 policy, with the trained weights."""
    with policy("float32"):
        copy = build()
    copy.set_weights(model.get_weights())
    return copy
