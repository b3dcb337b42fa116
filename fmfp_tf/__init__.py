"""fmfp-tf: feature mask and feature padding defenses for Keras 3 image classifiers.

The defenses are Keras layers that randomise every training image and are the identity at
inference; `defend` adds one to an existing model. They run on the TensorFlow, JAX and PyTorch
backends. Everything else is a subpackage reachable as an attribute, imported on first use:
`fmfp_tf.data`, `fmfp_tf.models`, `fmfp_tf.attacks`, `fmfp_tf.training`, `fmfp_tf.evaluation`,
`fmfp_tf.reproduction` (training, tf.data and export use TensorFlow; install the backend you use
as an extra: `pip install 'fmfp-tf[jax]'`).

`import fmfp_tf` imports Keras (and so its backend) and registers FeatureMask and FeaturePadding
with Keras's serializer, so `keras.models.load_model` of a `.keras` file holding them works after
it; it installs no import hook and sets no environment variable.

Example:

>>> import fmfp_tf
>>> fmfp_tf.FeatureMask(size="20%").size
0.2
"""
import importlib
import logging
import os

from fmfp_tf.errors import DataError, FmfpError, ModelError, UsageError


def _keras_backend_missing(error):
    """One line for Keras failing to import its backend (TensorFlow by default): which backend,
    and the two ways out."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow (Keras's default)")
    return ImportError(
        f"fmfp_tf: Keras's backend {backend} is not installed (No module named "
        f"{error.name!r}); install it (pip install 'fmfp-tf[tensorflow]', '[jax]' or '[torch]') "
        "or set KERAS_BACKEND to an installed one: jax, torch or tensorflow")


try:
    import keras  # noqa: F401  (its backend is imported here: a missing one is named below)
except ModuleNotFoundError as _error:
    if _error.name and _error.name.split(".")[0] in ("tensorflow", "jax", "jaxlib", "torch"):
        raise _keras_backend_missing(_error) from None
    raise
except ValueError as _error:  # Keras's "Unable to import backend : NAME"
    if "Unable to import backend" not in str(_error):
        raise
    raise ImportError(f"fmfp_tf: KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r} is no Keras "
                      "backend; expected tensorflow, jax or torch") from None

from fmfp_tf.layers import FeatureMask, FeaturePadding  # noqa: E402
from fmfp_tf.version import __version__

# the library reports progress to the "fmfp_tf" logger; the application (the CLI, a notebook)
# decides what is shown, and nothing is shown by default
logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY_NAMES = {"defend": "fmfp_tf.defenses"}
_LAZY_SUBMODULES = ("data", "models", "attacks", "training", "evaluation", "reproduction",
                    "layers", "config", "defenses", "export", "sizes", "runs",
                    "defense_registry", "backend")


def __getattr__(name):
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"fmfp_tf.{name}")
    raise AttributeError(f"module 'fmfp_tf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_NAMES) | set(_LAZY_SUBMODULES))


__all__ = ["FeatureMask", "FeaturePadding", "defend", "FmfpError", "UsageError", "DataError",
           "ModelError", "__version__", *_LAZY_SUBMODULES]
