"""JAX: what the layers and attacks need beyond `keras.ops`."""
import jax


def is_concrete(x):
    return not isinstance(x, jax.core.Tracer)


def to_numpy(x):
    import numpy as np

    return np.asarray(x)


def gpu_names():
    return [str(device.device_kind) for device in jax.devices() if device.platform == "gpu"]
