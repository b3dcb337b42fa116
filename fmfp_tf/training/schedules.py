"""Optimizers and learning-rate schedules, chosen by `TrainConfig` (`optimizer`, `schedule`,
`learning_rate` as the peak rate, `warmup_epochs`, `weight_decay`).

- `constant`: the rate throughout (the toolkit's original behaviour).
- `cosine`: linear warm-up from 0 over `warmup_epochs`, then cosine decay to 0 at the last step
  (Loshchilov & Hutter 2017, without restarts).
- `one-cycle`: linear rise from peak/25 to the peak over the first 30 % of the steps, then cosine
  annealing to peak/10^4 (Smith & Topin 2019, "Super-convergence").

The schedule is a function of the optimizer's step counter, which checkpoints hold, so a resumed
run continues on the same curve.
"""
import math

import keras

from fmfp_tf.optimization_registry import OPTIMIZERS, SCHEDULES


@keras.saving.register_keras_serializable(package="fmfp_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak` over `warmup_steps`, then cosine decay to 0 at `total_steps`."""

    def __init__(self, peak, total_steps, warmup_steps=0):
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        progress = keras.ops.clip((step - self.warmup_steps)
                                  / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + keras.ops.cos(math.pi * progress))
        return keras.ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="fmfp_tf")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Rise from peak/25 to `peak` over `rise` of the steps, then cosine to peak/10^4."""

    def __init__(self, peak, total_steps, rise=0.3):
        self.peak, self.total_steps, self.rise = peak, total_steps, rise

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        up_steps = max(self.rise * self.total_steps, 1.0)
        start, end = self.peak / 25.0, self.peak / 1e4
        up = start + (self.peak - start) * keras.ops.clip(step / up_steps, 0.0, 1.0)
        progress = keras.ops.clip((step - up_steps) / max(self.total_steps - up_steps, 1.0),
                                  0.0, 1.0)
        down = end + 0.5 * (self.peak - end) * (1.0 + keras.ops.cos(math.pi * progress))
        return keras.ops.where(step < up_steps, up, down)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "rise": self.rise}


# the builders `optimization_registry` names: (config, total steps, steps per epoch) -> the rate
# or its schedule, and (rate, config) -> the optimizer
def constant_rate(config, total, per_epoch):
    return config.learning_rate


def cosine_rate(config, total, per_epoch):
    return WarmupCosine(config.learning_rate, total,
                        int(round(config.warmup_epochs * per_epoch)))


def one_cycle_rate(config, total, per_epoch):
    return OneCycle(config.learning_rate, total)


def adam(rate, config):
    return keras.optimizers.Adam(rate)


def adamw(rate, config):
    # decoupled weight decay: Keras applies it to the weights, not to the loss
    return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)


def sgd(rate, config):
    # momentum and Nesterov: the usual CNN choice; decay decoupled, as AdamW's
    return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True,
                                weight_decay=config.weight_decay or None)


def learning_rate(config, steps_per_epoch):
    """The config's rate: a float for `constant`, else a schedule over the run's steps."""
    total = max(1, config.epochs * steps_per_epoch)
    return SCHEDULES[config.schedule](config, total, steps_per_epoch)


def optimizer(config, steps_per_epoch):
    """The config's optimizer with its learning-rate schedule."""
    return OPTIMIZERS[config.optimizer](learning_rate(config, steps_per_epoch), config)
