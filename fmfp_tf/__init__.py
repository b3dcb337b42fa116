"""fmfp-tf: feature mask and feature padding defenses for TensorFlow/Keras image classifiers.

The defenses are Keras layers that randomise every training image and are the identity at
inference; `defend` adds one to an existing model. Everything else is a subpackage reachable as an
attribute: `fmfp_tf.data`, `fmfp_tf.models`, `fmfp_tf.attacks`, `fmfp_tf.training`,
`fmfp_tf.evaluation`, `fmfp_tf.reproduction`.

TensorFlow is imported on first use of one of those names, so `import fmfp_tf` (and
`fmfp-tf --help`) stays fast; FeatureMask and FeaturePadding are registered with Keras the moment
Keras is imported (see `fmfp_tf.startup`), so `keras.models.load_model` of a `.keras` file
holding them works after a plain `import fmfp_tf`.

Example:

>>> import fmfp_tf
>>> fmfp_tf.FeatureMask(size="20%").size
0.2
"""
import importlib
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fmfp_tf import startup  # noqa: E402
from fmfp_tf.errors import DataError, FmfpError, ModelError, UsageError  # noqa: E402
from fmfp_tf.version import __version__  # noqa: E402

startup.install()
# the library reports progress to the "fmfp_tf" logger; the application (the CLI, a notebook)
# decides what is shown, and nothing is shown by default
logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY_NAMES = {
    "FeatureMask": "fmfp_tf.layers.feature_mask",
    "FeaturePadding": "fmfp_tf.layers.feature_padding",
    "defend": "fmfp_tf.defenses",
}
_LAZY_SUBMODULES = ("data", "models", "attacks", "training", "evaluation", "reproduction",
                    "layers", "config", "defenses", "export", "sizes", "runs",
                    "defense_registry")


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
