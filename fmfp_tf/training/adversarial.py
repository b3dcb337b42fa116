"""Adversarial-training baselines: FGSM-AT, PGD-AT and C&W-AT.

- fgsm-at (Goodfellow et al. 2015): each batch mixes the clean loss and the loss on FGSM examples
  crafted against the current weights (clean weight 0.5 by default).
- pgd-at (Madry et al. 2018): the loss is on PGD examples (k steps, random start, step
  2.5 * eps / k) crafted against the current weights (clean weight 0 by default).
- cw-at (the paper's table 4): the training set is augmented once with C&W L2 examples crafted
  on the undefended twin model (same dataset, model and seed, no defense), keeping true labels.
- fast-at (Wong et al. 2020): FGSM from a uniform random start with step 1.25 eps, projected to
  the eps-ball (clean weight 0); about one extra forward-backward pass per step.
- nfgsm-at (de Jorge et al. 2022, "Make some noise"): FGSM of step eps from a uniform start in
  the 2 eps-ball, not projected back (the training examples reach 3 eps); as cheap as fast-at and
  without its catastrophic overfitting at 8/255.
- trades-at (Zhang et al. 2019): clean cross-entropy plus beta x KL(clean || adversarial), the
  adversarial point found by k signed steps on the KL (`trades.py`, shared with `keras_fit`).
- mart-at (Wang et al. 2020): PGD examples, the boosted cross-entropy on them plus beta x
  KL(clean || adversarial) weighted by 1 - p_y(clean) (`mart.py`, shared with `keras_fit`).
- mask+pgd-at / padding+fast-at / ...: the FM/FP layer is part of the model being attacked.

Examples are crafted with the model in inference mode (no dropout, batch-norm statistics frozen).
"""
import dataclasses
import logging
import typing

import numpy as np
import tensorflow as tf

from fmfp_tf import backend, defense_registry, registry
from fmfp_tf.attacks.common import loss_gradient
from fmfp_tf.attacks.cw import cw_l2
from fmfp_tf.attacks.fgsm import fgsm_graph
from fmfp_tf.attacks.pgd import pgd_graph
from fmfp_tf.data.images import Arrays
from fmfp_tf.training import mart, trades

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Perturbation:
    """Online adversarial training's inner step: how each batch's training examples are crafted.

    `craft(x, y) -> x_adv` runs inside the compiled train step against the current weights; the
    loss is `clean_weight` * clean loss + (1 - clean_weight) * loss on `craft`'s examples, or,
    when `loss` is given, `loss(y, clean_logits, adversarial_logits)` per example (TRADES).
    `generator` holds the state of random starts, so a checkpoint resumes them exactly.
    """

    method: str
    craft: typing.Callable
    clean_weight: float = 0.0
    generator: typing.Optional[tf.random.Generator] = None
    loss: typing.Optional[typing.Callable] = None

    def __call__(self, x, y):
        return tf.stop_gradient(self.craft(x, y))


def perturbation(config, model):
    """The `Perturbation` of the config's online adversarial training (None for offline or no
    adversarial training), built by the function its `defense_registry` entry names."""
    method = config.adversarial_training
    entry = defense_registry.ADVERSARIAL_TRAINING.get(method)
    if entry is None or not entry.online:
        return None
    clean_weight = (config.at_clean_fraction if config.at_clean_fraction is not None
                    else entry.clean_weight)
    # a builder gives (craft, generator), or (craft, generator, loss) for a loss of its own
    craft, generator, *loss = registry.resolve(entry.perturbation)(config, model)
    # the attack core's backend module is imported here, not first inside the traced train
    # step (where AutoGraph would try, and fail, to convert importlib)
    backend.current()
    return Perturbation(method, craft, clean_weight, generator, loss[0] if loss else None)


def fgsm_examples(config, model):
    """(craft, generator): FGSM from the clean point (Goodfellow et al. 2015)."""
    eps = tf.constant(config.at_eps, tf.float32)
    return (lambda x, y: fgsm_graph(model, x, y, eps)), None


def fast_examples(config, model):
    """(craft, generator): one FGSM step of 1.25 eps from a uniform random start in the eps-ball,
    projected back to it (Wong et al. 2020). Prone to catastrophic overfitting, which the
    training loop's robust probe watches for. at_step_size replaces the 1.25 eps."""
    return _pgd_from_random_starts(config, model, config.at_step_size or 1.25 * config.at_eps, 1)


def noisy_fgsm_examples(config, model):
    """(craft, generator): N-FGSM (de Jorge et al. 2022): x + eta + eps * sign(grad at x + eta),
    eta uniform in [-2 eps, 2 eps], clipped to the image range only. The step defaults to eps
    (at_step_size sets it); the larger noise, not a projection, is what prevents the collapse."""
    eps = tf.constant(config.at_eps, tf.float32)
    step = tf.constant(config.at_step_size or config.at_eps, tf.float32)
    generator = tf.random.Generator.from_seed(config.seed + 7919)

    def craft(x, y):
        noisy = tf.clip_by_value(x + 2.0 * eps * generator.uniform(tf.shape(x), -1.0, 1.0),
                                 0.0, 1.0)
        grad, _ = loss_gradient(model, noisy, y)
        return tf.clip_by_value(noisy + step * tf.sign(grad), 0.0, 1.0)

    return craft, generator


def pgd_examples(config, model):
    """(craft, generator): PGD-k from a uniform random start, step 2.5 eps / k by default
    (Madry et al. 2018)."""
    steps = config.at_steps
    return _pgd_from_random_starts(config, model,
                                   config.at_step_size or 2.5 * config.at_eps / steps, steps)


def trades_examples(config, model):
    """(craft, generator, loss): TRADES (Zhang et al. 2019): at_steps signed steps of
    at_step_size (default 2.5 eps / steps) on KL(f(x) || f(x')) from x + 0.001 N(0, 1); the loss
    is the clean cross-entropy plus trades_beta x that KL."""
    return _with_own_objective(
        config, lambda x, y, noise, eps, step, steps: trades.examples(model, x, noise, eps, step,
                                                                      steps),
        trades.loss, config.trades_beta)


def mart_examples(config, model):
    """(craft, generator, loss): MART (Wang et al. 2020): at_steps signed steps of at_step_size
    (default 2.5 eps / steps) on the cross-entropy from x + 0.001 N(0, 1); the loss is the
    boosted cross-entropy plus mart_beta x KL(clean || adversarial) x (1 - p_y(clean))."""
    return _with_own_objective(
        config, lambda *args: mart.examples(model, *args), mart.loss, config.mart_beta)


def _with_own_objective(config, examples, loss, beta):
    """(craft, generator, loss) of a method that steps from x + small Gaussian noise and trains
    on an objective of its own: `examples(x, y, noise, eps, step, steps)`, `loss(y, clean,
    adversarial, beta)`."""
    eps, steps = config.at_eps, config.at_steps
    step = config.at_step_size or 2.5 * eps / steps
    generator = tf.random.Generator.from_seed(config.seed + 7919)

    def craft(x, y):
        return examples(x, y, generator.normal(tf.shape(x)), eps, step, steps)

    return craft, generator, lambda y, clean, adversarial: loss(y, clean, adversarial, beta)


def _pgd_from_random_starts(config, model, step_size, steps):
    """(craft, generator): L-inf PGD at the config's eps, each call from fresh random starts
    drawn from a checkpointable generator."""
    eps = tf.constant(config.at_eps, tf.float32)
    generator = tf.random.Generator.from_seed(config.seed + 7919)

    def craft(x, y):
        start = generator.uniform(tf.shape(x), -1.0, 1.0)
        return pgd_graph(model, x, y, eps, step_size, steps, "inf", start)

    return craft, generator


def cw_augmented(config, train_arrays, source):
    """The training set plus C&W examples crafted on `source` (the undefended twin model),
    keeping the true labels."""
    count = max(1, int(round(config.cw_at_fraction * len(train_arrays.labels))))
    chosen = np.random.default_rng(config.seed).choice(len(train_arrays.labels), count,
                                                        replace=False)
    x = train_arrays.images[chosen].astype(np.float32) / 255.0
    y = train_arrays.labels[chosen]
    logger.info("cw-at: crafting %d C&W examples on the twin (%d iterations)", count,
                config.cw_at_iterations)
    x_adv = cw_l2(source, x, y, max_iterations=config.cw_at_iterations, binary_search_steps=4)
    adversarial = np.clip(np.round(x_adv * 255.0), 0, 255).astype(np.uint8)
    return Arrays(np.concatenate([train_arrays.images, adversarial]),
                  np.concatenate([train_arrays.labels, y]).astype(np.int32),
                  train_arrays.class_names, train_arrays.skipped)
