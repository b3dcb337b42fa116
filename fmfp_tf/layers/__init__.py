"""The two defenses as Keras layers: active while training, the identity at inference."""
from fmfp_tf.layers.feature_mask import FeatureMask
from fmfp_tf.layers.feature_padding import FeaturePadding

__all__ = ["FeatureMask", "FeaturePadding"]
