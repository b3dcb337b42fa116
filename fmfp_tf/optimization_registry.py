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
import dataclasses

from fmfp_tf.registry import Registry
from fmfp_tf.settings import MAX_BATCH_SIZE, Settings, invalid, setting

WEIGHT_AVERAGING = ("none", "ema")

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


@dataclasses.dataclass(frozen=True)
class OptimisationSettings(Settings):
    """How a training job optimises (the `optimisation` group of `config.TrainConfig`): what
    the optimizer, the schedule, the weight average and the loop read."""

    epochs: int = setting(8, "passes over the training set", minimum=1, maximum=100_000)
    batch_size: int = setting(32, "global batch size, over all replicas", minimum=1,
                              maximum=MAX_BATCH_SIZE)
    learning_rate: float = setting(1e-3, "learning rate, the peak under a schedule", above=0,
                                   below=10)
    optimizer: str = setting("adam", "adam, adamw or sgd (momentum 0.9, Nesterov), or a "
                                     "registered one", choices=OPTIMIZERS.names)
    schedule: str = setting("constant", "learning-rate schedule (cosine takes --warmup-epochs)",
                            choices=SCHEDULES.names)
    warmup_epochs: float = setting(0.0, "linear warm-up of the cosine schedule", minimum=0)
    weight_decay: float = setting(0.0, "decoupled weight decay (adamw, sgd)", minimum=0, below=1)
    weight_averaging: str = setting("none", "ema: save the exponential moving average of the "
                                            "weights (the raw ones go to model-raw.keras)",
                                    choices=WEIGHT_AVERAGING)
    ema_decay: float = setting(0.999, "decay of --weight-averaging ema", above=0, below=1,
                               unread_when=("weight_averaging", "none"))
    seed: int = setting(0, "seed of weights, shuffling and the layers", minimum=0,
                        maximum=2 ** 32 - 1)

    def __post_init__(self):
        super().__post_init__()
        if not self.warmup_epochs < self.epochs:
            raise invalid("warmup_epochs", self.warmup_epochs,
                          f"a number in [0, epochs = {self.epochs})")
        if self.warmup_epochs and self.schedule != "cosine":
            raise invalid("warmup_epochs", self.warmup_epochs,
                          "0 unless schedule is cosine (one-cycle has its own rise)")
        if self.weight_decay and self.optimizer == "adam":
            raise invalid("weight_decay", self.weight_decay,
                          "0 with optimizer adam (use adamw or sgd for decoupled weight decay)")


