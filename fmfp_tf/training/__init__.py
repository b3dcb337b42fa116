"""Training: `train(config, out_dir)` runs a whole job (TensorFlow); `fit` is the loop behind
it. `AdversarialModel` and `RobustProbe` (`keras_fit`) train adversarially through Keras's own
`fit` on every backend. Names are imported on first use, so the Keras route needs no
TensorFlow."""
import importlib

_NAMES = {"train": "run", "train_cached": "run", "build_model": "run", "fit": "loop",
          "Interrupted": "loop", "get_strategy": "strategies",
          "AdversarialModel": "keras_fit", "RobustProbe": "keras_fit",
          "AdversarialFitSettings": "keras_fit", "TrainingJob": "run_directory"}


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"fmfp_tf.training.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_NAMES)
