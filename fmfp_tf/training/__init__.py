"""Training: `train(config, out_dir)` runs a whole job; `fit` is the loop behind it."""
from fmfp_tf.training.loop import Interrupted, fit
from fmfp_tf.training.run import build_model, train, train_cached
from fmfp_tf.training.strategies import get_strategy

__all__ = ["train", "train_cached", "fit", "build_model", "get_strategy",
           "Interrupted"]
