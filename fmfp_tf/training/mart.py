"""MART (Wang et al. 2020, "Improving Adversarial Robustness Requires Revisiting Misclassified
Examples"), written once on `keras.ops`: the TensorFlow loop (`adversarial.mart_examples`) and
`keras_fit.AdversarialModel` on every backend share it.

The training example x' is PGD on the cross-entropy from x plus small Gaussian noise (as the
reference code starts, not Madry's uniform start). The loss on it is the "boosted"
cross-entropy, CE(f(x'), y) - log(1 - the highest wrong-class probability of f(x')), which also
pushes the runner-up class down, plus beta x KL(f(x) || f(x')) weighted by 1 - p_y(x): the
regulariser counts most for the images the model gets wrong or barely right, which is the
paper's point (misclassified examples matter more to robustness than their share suggests).
"""
from keras import ops

from fmfp_tf.attacks import common
from fmfp_tf.attacks.pgd import pgd_graph
from fmfp_tf.training.trades import NOISE, kl_divergence

# the reference's guards: log(1 - p) when p reaches 1, and a weight that never reaches 0
_MARGIN_GUARD = 1.0001
_WEIGHT_GUARD = 1.0000001


def examples(model, x, y, noise, eps, step_size, steps):
    """x' in the eps-ball around x (and in [0, 1]) after `steps` signed-gradient ascents of the
    cross-entropy from x + `noise` (a standard normal draw, scaled here by trades.NOISE)."""
    return pgd_graph(model, x, y, eps, step_size, steps, "inf", start=NOISE * noise / eps)


def loss(y, clean_logits, adversarial_logits, beta):
    """The per-example MART objective: BCE(f(x'), y) + beta KL(f(x) || f(x')) (1 - p_y(x))."""
    clean_logits = ops.cast(clean_logits, "float32")
    adversarial_logits = ops.cast(adversarial_logits, "float32")
    true = ops.one_hot(ops.cast(y, "int32"), ops.shape(adversarial_logits)[-1])
    adversarial = ops.softmax(adversarial_logits, axis=-1)
    runner_up = ops.max(ops.where(true > 0, 0.0, adversarial), axis=-1)
    boosted = (common.cross_entropy(adversarial_logits, y)
               - ops.log(_MARGIN_GUARD - runner_up))
    clean_true = ops.sum(ops.softmax(clean_logits, axis=-1) * true, axis=-1)
    return boosted + beta * kl_divergence(clean_logits, adversarial_logits) * (
        _WEIGHT_GUARD - clean_true)
