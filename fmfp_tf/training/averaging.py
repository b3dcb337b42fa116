"""Weight averaging: an exponential moving average (EMA) of a model's weights during training.

Averaged weights generalise better than the last iterate and, for adversarial training, hold
more robust accuracy (Rebuffi et al. 2021, "Data augmentation can improve robustness"; Izmailov
et al. 2018 for averaging in general). After each optimizer step

    average <- d * average + (1 - d) * weights,   d = min(decay, (1 + t) / (10 + t)),

where t counts the updates: the warm-up (as in TensorFlow's ExponentialMovingAverage with
num_updates) lets the average follow the fast early changes instead of remembering the random
initialisation for 1 / (1 - decay) steps. Every floating-point weight is averaged, batch-norm
statistics included, so the averaged model is self-consistent.

The average lives in variables beside the model's (checkpointed with it, so a resumed run
continues the same average); `swapped_in` puts it into the model for evaluation or saving.
"""
import contextlib

import tensorflow as tf


class ExponentialAverage:
    """The EMA of `model`'s floating-point weights; create it under the strategy's scope."""

    def __init__(self, model, decay=0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1); got {decay!r}")
        self.decay = float(decay)
        self.weights = [w for w in model.weights if tf.as_dtype(w.dtype).is_floating]
        self.average = [tf.Variable(w.value if hasattr(w, "value") else w, trainable=False,
                                    name=f"average_{i}") for i, w in enumerate(self.weights)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="average_updates")

    def update(self):
        """One averaging step (inside the compiled train step, in cross-replica context)."""
        self.updates.assign_add(1)
        count = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + count) / (10.0 + count))
        for average, weight in zip(self.average, self.weights):
            value = tf.convert_to_tensor(weight)
            average.assign(decay * average + (1.0 - decay) * tf.cast(value, average.dtype))

    def trackables(self):
        """What a `tf.train.Checkpoint` must hold to resume the average."""
        return {"average": list(self.average), "average_updates": self.updates}

    def copy_to_model(self):
        """Puts the averaged weights into the model (for good: see `swapped_in` for a while)."""
        for weight, average in zip(self.weights, self.average):
            weight.assign(average)

    @contextlib.contextmanager
    def swapped_in(self):
        """The model holds the averaged weights inside the block, its own ones again after."""
        raw = [tf.identity(w) for w in self.weights]
        self.copy_to_model()
        try:
            yield
        finally:
            for weight, value in zip(self.weights, raw):
                weight.assign(value)
