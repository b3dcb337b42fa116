"""The learning-rate schedules and optimizers `train` knows, by name: one `Registry` each, whose
entries are "module:function" until used, so config validation and the CLI's help list the
names without importing a framework. Adding one is one function and one line here, or one
`register_schedule` / `register_optimizer` call from a plugin.

A schedule builder takes (config, total steps, steps per epoch) and returns the rate (a float or
a `keras.optimizers.schedules.LearningRateSchedule`); an optimizer builder takes (rate, config)
and returns a Keras optimizer.

Example:

>>> from fmfp_tf import optimization_registry
>>> optimization_registry.OPTIMIZERS.names()
('adam', 'adamw', 'sgd')
"""
from fmfp_tf.registry import Registry

_SCHEDULES = "fmfp_tf.training.schedules"

SCHEDULES = Registry("schedule", {
    "constant": f"{_SCHEDULES}:constant_rate",
    "cosine": f"{_SCHEDULES}:cosine_rate",
    "one-cycle": f"{_SCHEDULES}:one_cycle_rate",
})
OPTIMIZERS = Registry("optimizer", {
    "adam": f"{_SCHEDULES}:adam",
    "adamw": f"{_SCHEDULES}:adamw",
    "sgd": f"{_SCHEDULES}:sgd",
})


def register_schedule(name, builder, replace=False):
    """Adds a learning-rate schedule `train --schedule NAME` builds with
    `builder(config, total_steps, steps_per_epoch)`."""
    return SCHEDULES.register(name, builder, replace=replace)


def register_optimizer(name, builder, replace=False):
    """Adds an optimizer `train --optimizer NAME` builds with `builder(rate, config)`."""
    return OPTIMIZERS.register(name, builder, replace=replace)
