"""PGD (Madry et al. 2018) in L-inf and L2, with random start and restarts; I-FGSM is PGD without
random start (Kurakin et al. 2017, the basic iterative method)."""
import numpy as np
import tensorflow as tf

from fmfp_tf.attacks import common
from fmfp_tf.errors import UsageError

NORMS = ("inf", "2")


def l2_norm(v):
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=tf.range(1, tf.rank(v)), keepdims=True)
                   + 1e-12)


def project(delta, eps, norm):
    if norm == "inf":
        return tf.clip_by_value(delta, -eps, eps)
    return delta * tf.minimum(1.0, eps / l2_norm(delta))


def _random_start(x, eps, norm, seed):
    if norm == "inf":
        return tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps)
    # uniform in the L2 ball: a random direction times radius eps * u^(1/d)
    direction = tf.random.stateless_normal(tf.shape(x), seed)
    direction /= l2_norm(direction)
    dims = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
    u = tf.random.stateless_uniform(tf.concat([tf.shape(x)[:1], tf.ones_like(tf.shape(x)[1:])],
                                              0), tf.random.experimental.stateless_fold_in(seed, 1))
    return direction * eps * tf.pow(u, 1.0 / dims)


def pgd_graph(model, x, y, eps, step_size, steps, norm="inf", random_start=True, seed=None,
              clip_min=0.0, clip_max=1.0):
    """Graph-mode core (usable inside a train step). `steps` is a Python int."""
    if seed is None:
        seed = tf.constant([0, 0], tf.int64)
    delta = _random_start(x, eps, norm, seed) if random_start else tf.zeros_like(x)
    x_adv = tf.clip_by_value(x + delta, clip_min, clip_max)

    def step(i, x_adv):
        grad, _ = common.loss_gradient(model, x_adv, y)
        direction = tf.sign(grad) if norm == "inf" else grad / l2_norm(grad)
        x_adv = x_adv + step_size * direction
        return i + 1, tf.clip_by_value(x + project(x_adv - x, eps, norm), clip_min, clip_max)

    # an explicit while_loop, not autograph: callers such as strategy.run on a lambda whose
    # source autograph cannot read would otherwise get a Python loop over a tensor
    _, x_adv = tf.while_loop(lambda i, _: i < steps, step, [tf.constant(0), x_adv])
    return x_adv


@tf.function(reduce_retracing=True)
def _compiled(model, x, y, eps, step_size, steps, norm, random_start, seed, restarts):
    best = x
    fooled = tf.zeros(tf.shape(y), tf.bool)
    best_loss = tf.fill(tf.shape(y), -np.inf)
    for restart in range(restarts):
        candidate = pgd_graph(model, x, y, eps, step_size, steps, norm, random_start,
                              tf.random.experimental.stateless_fold_in(seed, restart))
        logits = common.logits_of(model, candidate)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        wrong = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
        # keep a restart's result where it fools the model, or where nothing has fooled it yet
        # and its loss is higher
        take = (wrong & ~fooled) | (~fooled & ~wrong & (loss > best_loss))
        mask = tf.reshape(take, [-1] + [1] * (len(x.shape) - 1))
        best = tf.where(mask, candidate, best)
        best_loss = tf.where(take, loss, best_loss)
        fooled = fooled | wrong
    return best


def pgd(model, x, y, eps=8 / 255, step_size=None, steps=10, norm="inf", random_start=True,
        restarts=1, seed=0, batch_size=256, progress=None):
    """Untargeted PGD; with restarts, each example keeps the first restart that fools the model
    (or the highest-loss one).

    Args:
        eps: budget in the chosen norm ('inf' or '2').
        step_size: default 2.5 * eps / steps (Madry et al. 2018).
        steps, restarts: iterations per run and independent random starts.
        seed: seeds the random starts (int); the same seed gives the same result.

    Returns float32 adversarial images within the budget and in [0, 1].
    """
    eps = common.parse_eps(eps)
    norm = str(norm).replace("np.", "").lower()
    norm = {"linf": "inf", "l2": "2"}.get(norm, norm)
    if norm not in NORMS:
        raise UsageError(f"norm must be 'inf' or '2'; got {norm!r}")
    steps = common.check_positive_int("steps", steps)
    restarts = common.check_positive_int("restarts", restarts)
    step_size = 2.5 * eps / steps if step_size is None else common.check_budget(
        "step_size", step_size, 0.0, 1.0 if norm == "inf" else 1e3, low_open=True)
    x = common.check_images(x)
    y = common.check_labels(y, len(x), common.num_classes_of(model, x))
    counter = [0]

    def run(a, b):
        counter[0] += 1
        return _compiled(model, a, b, tf.constant(eps), tf.constant(step_size, tf.float32),
                         tf.constant(steps), norm, bool(random_start),
                         common.seed_pair(seed, counter[0]), restarts)

    return common.batched(run, x, y, batch_size, progress)


def ifgsm(model, x, y, eps=8 / 255, steps=10, step_size=None, batch_size=256, progress=None):
    """I-FGSM / BIM: `steps` signed-gradient steps of `step_size` (default eps / 4), projected
    onto the eps ball, no random start."""
    eps = common.parse_eps(eps)
    step_size = eps / 4 if step_size is None else step_size
    return pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, norm="inf",
               random_start=False, restarts=1, batch_size=batch_size, progress=progress)
