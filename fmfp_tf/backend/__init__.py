"""What `keras.ops` lacks, one small module per backend (the pattern of Keras's own trainers).

`for_tensor(x)` picks the module by the tensor's own library, not by `keras.backend.backend()`:
inside a `tf.data` pipeline a layer works on TensorFlow tensors whatever the Keras backend is.
Each module imports its framework on first use only, so the JAX and PyTorch paths never import
TensorFlow.
"""
import importlib

import numpy as np

_MODULES = {"tensorflow": "fmfp_tf.backend.tensorflow", "jax": "fmfp_tf.backend.jax",
            "jaxlib": "fmfp_tf.backend.jax", "torch": "fmfp_tf.backend.torch"}


def for_tensor(x):
    """The backend module of `x`'s framework, or None for NumPy and Python values."""
    root = type(x).__module__.split(".", 1)[0]
    name = _MODULES.get(root)
    return importlib.import_module(name) if name else None


def is_concrete(x):
    """Whether `x` holds values that can be read now (not a graph, trace or compile symbol)."""
    if isinstance(x, (np.ndarray, np.generic, int, float)):
        return True
    module = for_tensor(x)
    return module.is_concrete(x) if module else False


def to_numpy(x):
    """The values of a concrete tensor of any framework as a NumPy array (copied off the device)."""
    module = for_tensor(x)
    return module.to_numpy(x) if module else np.asarray(x)


_LOADED = {}


def current():
    """The module of the active Keras backend (imported once: later calls, inside a traced
    function too, only look it up)."""
    import keras

    name = keras.backend.backend()
    if name not in _LOADED:
        _LOADED[name] = importlib.import_module(_MODULES[name])
    return _LOADED[name]
