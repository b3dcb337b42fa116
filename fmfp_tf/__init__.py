"""fmfp-tf: feature mask and feature padding defenses for TensorFlow/Keras image classifiers.

The defenses are Keras layers that randomise every training image and are the identity at
inference; `defend` adds one to an existing model. Attacks, training and evaluation live in the
subpackages `fmfp_tf.attacks`, `fmfp_tf.training` and `fmfp_tf.evaluation`.

TensorFlow is imported on first use of a name below, so `import fmfp_tf` (and `fmfp-tf --help`)
stays fast.
"""
import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fmfp_tf.errors import DataError, FmfpError, ModelError, UsageError  # noqa: E402
from fmfp_tf.version import __version__  # noqa: E402

_LAZY = {
    "FeatureMask": "fmfp_tf.layers.feature_mask",
    "FeaturePadding": "fmfp_tf.layers.feature_padding",
    "defend": "fmfp_tf.defenses",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fmfp_tf' has no attribute {name!r}")


__all__ = ["FeatureMask", "FeaturePadding", "defend", "FmfpError", "UsageError", "DataError",
           "ModelError", "__version__"]
