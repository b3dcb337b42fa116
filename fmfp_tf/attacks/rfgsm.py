"""R+FGSM (Tramer et al. 2018): a random signed step of alpha, then an FGSM step of eps - alpha.

x' = clip(x + alpha * sign(N(0, I))), x_adv = clip(x' + (eps - alpha) * sign(grad at x')).
The total perturbation stays within eps.
"""
import tensorflow as tf

from fmfp_tf.attacks import common
from fmfp_tf.errors import UsageError


def rfgsm_graph(model, x, y, eps, alpha, seed, clip_min=0.0, clip_max=1.0):
    noise = tf.random.stateless_normal(tf.shape(x), seed)
    x_prime = tf.clip_by_value(x + alpha * tf.sign(noise), clip_min, clip_max)
    grad, _ = common.loss_gradient(model, x_prime, y)
    return tf.clip_by_value(x_prime + (eps - alpha) * tf.sign(grad), clip_min, clip_max)


@tf.function(reduce_retracing=True)
def _compiled(model, x, y, eps, alpha, seed):
    return rfgsm_graph(model, x, y, eps, alpha, seed)


def rfgsm(model, x, y, eps=8 / 255, alpha=None, seed=0, batch_size=256, progress=None):
    """Untargeted R+FGSM; alpha defaults to eps / 2 and must satisfy 0 <= alpha < eps."""
    eps = common.parse_eps(eps)
    alpha = eps / 2 if alpha is None else common.check_budget("alpha", alpha)
    if not 0 <= alpha < eps or eps == 0:
        raise UsageError(f"rfgsm needs 0 <= alpha < eps; got alpha {alpha:g}, eps {eps:g}")
    x = common.check_images(x)
    y = common.check_labels(y, len(x), common.num_classes_of(model, x))
    counter = [0]

    def run(a, b):
        counter[0] += 1
        return _compiled(model, a, b, tf.constant(eps), tf.constant(alpha, tf.float32),
                         common.seed_pair(seed, counter[0]))

    return common.batched(run, x, y, batch_size, progress)
