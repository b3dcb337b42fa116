"""R+FGSM (Tramer et al. 2018): a random signed step of alpha, then an FGSM step of eps - alpha.

x' = clip(x + alpha * sign(N(0, I))), x_adv = clip(x' + (eps - alpha) * sign(grad at x')).
The total perturbation stays within eps.
"""
import numpy as np
from keras import ops

from fmfp_tf.attacks import common, counting
from fmfp_tf.errors import UsageError


def rfgsm_graph(model, x, y, eps, alpha, noise, clip_min=0.0, clip_max=1.0):
    """The core on tensors; `noise` is standard normal of x's shape (only its signs are used)."""
    x_prime = ops.clip(x + alpha * ops.sign(noise), clip_min, clip_max)
    grad, _ = common.loss_gradient(model, x_prime, y)
    return ops.clip(x_prime + (eps - alpha) * ops.sign(grad), clip_min, clip_max)


@common.takes_bounds
def rfgsm(model, x, y, eps=8 / 255, alpha=None, seed=0, batch_size=256, progress=None, ids=None):
    """Untargeted R+FGSM; alpha defaults to eps / 2 and must satisfy 0 <= alpha < eps. An
    image's noise derives from (seed, its id in `ids`, default 0..N-1), not from its batch."""
    eps = common.parse_eps(eps)
    alpha = eps / 2 if alpha is None else common.check_budget("alpha", alpha)
    if not 0 <= alpha < eps or eps == 0:
        raise UsageError(f"rfgsm needs 0 <= alpha < eps; got alpha {alpha:g}, eps {eps:g}")
    x = common.check_images(x)
    y = common.check_labels(y, len(x), common.num_classes_of(model, x))
    run = common.compiled(rfgsm_graph, model, batch=("x", "y", "noise"))
    seed = common.seed_of(seed)

    def attack(a, b, batch_ids):
        noise = common.per_image(seed, batch_ids, (), lambda draw: draw.standard_normal(
            a.shape[1:])).astype(np.float32)
        counting.add(model, len(a), forward=1, backward=1)
        return run(common.tensor(a), common.tensor(b), common.tensor(eps, "float32"),
                   common.tensor(alpha, "float32"), common.tensor(noise))

    return common.batched(attack, x, y, batch_size, progress, ids)
