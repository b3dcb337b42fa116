"""Adversarial training through `model.fit`, on TensorFlow, JAX and PyTorch.

`AdversarialModel(model, method="nfgsm", eps=8/255)` wraps any Keras classifier (logits out,
images in [0, 1]); its `fit` trains it on examples crafted against the current weights at every
step, written once on `keras.ops` (the attack core's `fgsm_graph`, `pgd_graph`,
`loss_gradient`). What differs per backend is only how a train step receives the weights: on
TensorFlow and PyTorch the step reads the variables; on JAX (stateless, compiled) the crafting
runs in a `StatelessScope` over the step's state, and the random draws' seed state goes back into
that state, as Keras's own JAX trainer threads it. The rest is Keras's: weight averaging is the
optimizer's `use_ema=True`, and `RobustProbe` (a callback) is the overfitting guard.

    model = fmfp_tf.models.build("dnn1", (32, 32, 3), 43)   # or any Keras model
    robust = AdversarialModel(model, method="nfgsm", eps=8 / 255)
    robust.compile(keras.optimizers.Adam(1e-3, use_ema=True),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    robust.fit(x, y, epochs=10, callbacks=[RobustProbe(x_val, y_val, eps=8 / 255)])
    model.save("robust.keras")   # the wrapped model itself: no wrapper in the saved file

The methods are those of `fmfp-tf train` (`training/adversarial.py`, the TensorFlow loop), with the
same arithmetic: fgsm (clean weight 0.5), pgd (k steps from a random start, step 2.5 eps / k), fast
(one step of 1.25 eps from a random start, projected), nfgsm (a step of eps from noise in the 2
eps-ball, not projected), trades (k signed steps on KL(f(x) || f(x')); the loss is the clean
cross-entropy plus beta x that KL, `trades.py`), mart (PGD-k from a small Gaussian start; the
boosted cross-entropy plus beta x the KL weighted by 1 - p_y(x), `mart.py`). Examples are crafted
with the model in inference mode. Each is one function below, named by its `defense_registry` entry
(`keras_examples`, and `keras_loss` for a method with an objective of its own), so a plugin's
method that gives one trains through `fit` on every backend too.
"""
import dataclasses
import typing

import keras
import numpy as np
from keras import ops

from fmfp_tf import defense_registry, registry
from fmfp_tf.attacks import common
from fmfp_tf.attacks.fgsm import fgsm_graph
from fmfp_tf.attacks.pgd import pgd_graph
from fmfp_tf.errors import UsageError
from fmfp_tf.settings import MAX_COUNT, Settings, setting
from fmfp_tf.settings import key as settings_key
from fmfp_tf.training import mart, trades


def methods():
    """The online methods `AdversarialModel` knows: the `defense_registry` entries that give a
    `keras_examples` builder (built-ins below; a plugin's with one trains on every backend)."""
    return tuple(name for name, entry in defense_registry.ADVERSARIAL_TRAINING.items()
                 if entry.keras_examples is not None)


# the fit settings' names of the config keys a registry entry may declare `unread`
_FIT_NAMES = {"at_steps": "steps", "at_step_size": "step_size",
              "at_clean_fraction": "clean_weight"}


@dataclasses.dataclass(frozen=True)
class AdversarialFitSettings(Settings):
    """Online adversarial training's inner step, as `AdversarialModel` takes it."""

    prefix: typing.ClassVar[str] = "at"
    method: str = setting("nfgsm", "how each batch's examples are crafted", choices=methods)
    eps: float = setting(8 / 255, "L-inf budget, a share of the input range", minimum=0.0,
                         maximum=1.0)
    steps: int = setting(10, "the inner steps (pgd, trades and mart)", minimum=1, maximum=MAX_COUNT)
    step_size: float = setting(0.0, "the step; 0: the method's (pgd, trades, mart 2.5 eps / steps, "
                                    "fast 1.25 eps, nfgsm eps; fgsm has none)", minimum=0.0,
                               maximum=1.0)
    clean_weight: float = setting(-1.0, "weight of the clean loss; -1: the method's (fgsm 0.5, "
                                        "the others 0; trades and mart have none)", minimum=-1.0,
                                  maximum=1.0)
    beta: float = setting(6.0, "weight of the KL(clean || adversarial) term (trades, mart)",
                          above=0.0, maximum=1000.0)
    seed: int = setting(0, "seeds the random starts", minimum=0, maximum=2 ** 32 - 1)


# The built-in methods' examples on `keras.ops`, one function each, named by their registry
# entries (`keras_examples`): (settings, model, x, y, seed_generator) -> the crafted x.

def fgsm_examples(settings, model, x, y, seed_generator):
    """FGSM from the clean point (Goodfellow et al. 2015)."""
    return fgsm_graph(model, x, y, settings.eps)


def fast_examples(settings, model, x, y, seed_generator):
    """One step of 1.25 eps (or step_size) from a uniform start, projected (Wong et al. 2020)."""
    return _from_uniform_start(model, x, y, settings.eps, settings.step_size or 1.25 * settings.eps,
                               1, seed_generator)


def pgd_examples(settings, model, x, y, seed_generator):
    """PGD-k from a uniform start, step 2.5 eps / k by default (Madry et al. 2018)."""
    step = settings.step_size or 2.5 * settings.eps / settings.steps
    return _from_uniform_start(model, x, y, settings.eps, step, settings.steps, seed_generator)


def nfgsm_examples(settings, model, x, y, seed_generator):
    """N-FGSM (de Jorge et al. 2022): a step of eps from noise in the 2 eps-ball, clipped to
    the image range only."""
    eps = settings.eps
    noise = keras.random.uniform(ops.shape(x), -1.0, 1.0, seed=seed_generator)
    noisy = ops.clip(x + 2.0 * eps * noise, 0.0, 1.0)
    grad, _ = common.loss_gradient(model, noisy, y)
    return ops.clip(noisy + (settings.step_size or eps) * ops.sign(grad), 0.0, 1.0)


def trades_examples(settings, model, x, y, seed_generator):
    """TRADES's inner maximisation (`trades.examples`), step 2.5 eps / k by default."""
    step = settings.step_size or 2.5 * settings.eps / settings.steps
    noise = keras.random.normal(ops.shape(x), seed=seed_generator)
    return trades.examples(model, x, noise, settings.eps, step, settings.steps)


def trades_loss(settings, y, clean_logits, adversarial_logits):
    """TRADES's objective per example, with the settings' beta (a registry `keras_loss`)."""
    return trades.loss(y, clean_logits, adversarial_logits, settings.beta)


def mart_examples(settings, model, x, y, seed_generator):
    """MART's inner maximisation (`mart.examples`): PGD on the cross-entropy from x plus small
    Gaussian noise, step 2.5 eps / k by default."""
    step = settings.step_size or 2.5 * settings.eps / settings.steps
    noise = keras.random.normal(ops.shape(x), seed=seed_generator)
    return mart.examples(model, x, y, noise, settings.eps, step, settings.steps)


def mart_loss(settings, y, clean_logits, adversarial_logits):
    """MART's objective per example, with the settings' beta (a registry `keras_loss`)."""
    return mart.loss(y, clean_logits, adversarial_logits, settings.beta)


def _from_uniform_start(model, x, y, eps, step, steps, seed_generator):
    start = keras.random.uniform(ops.shape(x), -1.0, 1.0, seed=seed_generator)
    return pgd_graph(model, x, y, eps, step, steps, "inf", start)


def beta_key(entry):
    """The config key of the KL weight a method reads (trades_beta, mart_beta: a field `beta`
    in one of its settings groups), or None."""
    for group in entry.setting_groups():
        if any(field.name == "beta" for field in dataclasses.fields(group)):
            return settings_key(group, "beta")
    return None


def _check_reads(settings, entry):
    """A setting the method never reads (steps under nfgsm, a clean weight under trades, beta
    outside trades and mart) is refused unless left at its default, as `fmfp-tf train` refuses
    it."""
    if entry.keras_examples is None:
        raise UsageError(f"method {entry.name!r} crafts its examples with TensorFlow's loop "
                         "only (its registry entry gives no keras_examples); "
                         f"AdversarialModel knows {', '.join(methods())}")
    if -1.0 < settings.clean_weight < 0.0:
        raise UsageError(f"clean_weight = {settings.clean_weight} is invalid; expected a weight "
                         "in 0..1, or -1 for the method's")
    defaults = AdversarialFitSettings()
    unread = [_FIT_NAMES[key] for key in entry.unread if key in _FIT_NAMES]
    if beta_key(entry) is None:
        unread.append("beta")
    for name in unread:
        value = getattr(settings, name)
        if value != getattr(defaults, name):
            raise UsageError(f"{name} = {value}: method {entry.name!r} does not read it; leave "
                             f"it at {getattr(defaults, name)}")


class AdversarialModel(keras.Model):
    """`model` trained by `fit` on adversarial examples of its current weights (see the module).

    Args:
        model: a Keras classifier that outputs logits for images in [0, 1].
        method, eps, steps, step_size, clean_weight, beta, seed: `AdversarialFitSettings`; or
        settings: an `AdversarialFitSettings` instead.

    Calling it, `predict`, `evaluate` and saving `model` are the model's own; only `fit`'s train
    step differs. The loss is clean_weight x the clean loss + (1 - clean_weight) x the loss on
    the crafted examples (the compiled loss), or, for trades, its own objective (the compiled
    loss then only reports validation losses).
    """

    def __init__(self, model, method="nfgsm", eps=8 / 255, steps=10, step_size=0.0,
                 clean_weight=-1.0, beta=6.0, seed=0, settings=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise UsageError(f"AdversarialModel wraps a Keras model; got {type(model).__name__}")
        self.model = model
        self.settings = settings or AdversarialFitSettings(
            method=method, eps=common.parse_eps(eps), steps=steps, step_size=float(step_size),
            clean_weight=float(clean_weight), beta=float(beta), seed=seed)
        self.entry = defense_registry.ADVERSARIAL_TRAINING[self.settings.method]
        _check_reads(self.settings, self.entry)
        self.craft = registry.resolve(self.entry.keras_examples)
        self.method_loss = (registry.resolve(self.entry.keras_loss)
                            if self.entry.keras_loss is not None else None)
        weight = self.settings.clean_weight
        self.clean_weight = self.entry.clean_weight if weight < 0 else weight
        self.seed_generator = keras.random.SeedGenerator(self.settings.seed + 7919)

    def call(self, x, training=False):
        return self.model(x, training=training)

    def _examples(self, data):
        """(x, y, sample_weight) of the training batch: the crafted examples, with the clean
        ones beside them when they weigh in the loss."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise UsageError("AdversarialModel.fit takes no sample weights (the clean and "
                             "adversarial losses are weighted by clean_weight)")
        x = ops.cast(x, "float32")
        y = ops.cast(y, "int32")
        x_adv = ops.stop_gradient(self.craft(self.settings, self.model, x, y,
                                             self.seed_generator))
        if self.method_loss is not None:
            # clean first, crafted second: `compute_loss` splits the batch's logits there
            return ops.concatenate([x, x_adv]), ops.concatenate([y, y]), None
        if self.clean_weight == 0.0:
            return x_adv, y, None
        # one batch of both: the mean loss over it is w clean + (1 - w) adversarial
        ones = ops.ones_like(ops.cast(y, "float32"))
        weights = ops.concatenate([2.0 * self.clean_weight * ones,
                                   2.0 * (1.0 - self.clean_weight) * ones])
        return ops.concatenate([x, x_adv]), ops.concatenate([y, y]), weights

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """A method's own objective in training (TRADES's; the batch is the clean images, then
        their crafted twins); otherwise the compiled loss."""
        if not training or self.method_loss is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        half = ops.shape(y)[0] // 2
        loss = ops.mean(self.method_loss(self.settings, y[:half], y_pred[:half], y_pred[half:]))
        for term in self.losses:  # the model's own regularisers, as the compiled loss adds them
            loss = loss + ops.cast(ops.sum(term), "float32")
        return loss

    def train_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        (data,) = args
        return super().train_step(self._examples(data))

    def _jax_train_step(self, state, data):
        """JAX: the examples are crafted with the weights of the step's state (a
        `StatelessScope`), and the random draws' new seed state goes on in that state."""
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        mapping = list(zip(self.trainable_variables, trainable)) + list(
            zip(self.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            examples = self._examples(data)
            non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
        return super().train_step(
            (trainable, non_trainable, optimizer_variables, metrics_variables), examples)


class RobustProbe(keras.callbacks.Callback):
    """The overfitting guard of fast adversarial training, as a callback: after every epoch,
    PGD accuracy on a held-out probe; training stops when it falls by more than `drop` below
    its best (catastrophic overfitting), and the weights of the best epoch are put back.

    Args:
        x, y: the probe images (in [0, 1]) and labels, e.g. 256 held-out training images.
        eps: the PGD budget; steps: its iterations (step 2.5 eps / steps, random start).
        drop: how far below its best the probe may fall before training stops.
        model: the model to probe and restore (default: the one `fit` trains; give the wrapped
            model of an `AdversarialModel`).
    """

    def __init__(self, x, y, eps=8 / 255, steps=10, drop=0.2, model=None, seed=0):
        super().__init__()
        self.x = common.check_images(x)
        self.y = np.asarray(y).astype(np.int32)
        self.eps, self.steps, self.drop, self.seed = common.parse_eps(eps), steps, drop, seed
        self.probed_model = model
        self.history, self.best, self.best_weights = [], -1.0, None

    def _target(self):
        model = self.probed_model or self.model
        return model.model if isinstance(model, AdversarialModel) else model

    def on_epoch_end(self, epoch, logs=None):
        from fmfp_tf.attacks.pgd import pgd

        target = self._target()
        x_adv = pgd(target, self.x, self.y, eps=self.eps, steps=self.steps, seed=self.seed)
        robust = float((common.predict_logits(target, x_adv).argmax(-1) == self.y).mean())
        self.history.append(robust)
        if logs is not None:
            logs["probe_robust_accuracy"] = robust
        if robust > self.best:
            self.best, self.best_weights = robust, target.get_weights()
        elif robust < self.best - self.drop:
            self.model.stop_training = True
            target.set_weights(self.best_weights)
