"""TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and
Accuracy"), written once on `keras.ops`: the TensorFlow loop (`adversarial.trades_examples`) and
`keras_fit.AdversarialModel` on every backend share it.

The training example x' maximises KL(f(x) || f(x')) in the L-inf eps-ball (signed-gradient steps
from x plus small Gaussian noise, the model in inference mode, f(x) held fixed), and the loss is
cross-entropy on the clean image plus beta x KL(f(x) || f(x')), both terms through the weights.
Unlike PGD-AT the label enters only the clean term: the adversarial term asks for a smooth
classifier around x, whatever its class, which is what trades clean accuracy for robustness at
a rate beta sets (the paper's 6 at 8/255 on CIFAR-10).
"""
from keras import ops

from fmfp_tf.attacks import common

NOISE = 0.001  # the reference's start: x + 0.001 N(0, 1), so the KL's gradient is not 0 at x


def kl_divergence(p_logits, q_logits):
    """KL(softmax(p) || softmax(q)) per example, in float32."""
    log_p = ops.log_softmax(ops.cast(p_logits, "float32"), axis=-1)
    log_q = ops.log_softmax(ops.cast(q_logits, "float32"), axis=-1)
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def examples(model, x, noise, eps, step_size, steps):
    """x' in the eps-ball around x (and in [0, 1]) after `steps` signed-gradient ascents of
    KL(f(x) || f(x')) from x + `noise` (a standard normal draw, scaled here by `NOISE`)."""
    clean = ops.stop_gradient(common.logits_of(model, x))
    x_adv = ops.clip(x + NOISE * noise, 0.0, 1.0)

    def divergence(candidate):
        logits = common.logits_of(model, candidate)
        return ops.sum(kl_divergence(clean, logits)), logits

    def step(i, x_adv):
        _, _, grad = common.value_and_grad(divergence, x_adv)
        x_adv = x_adv + step_size * ops.sign(grad)
        return i + 1, ops.clip(x + ops.clip(x_adv - x, -eps, eps), 0.0, 1.0)

    _, x_adv = common.while_loop(lambda i, _: i < steps, step, (ops.convert_to_tensor(0), x_adv))
    return x_adv


def loss(y, clean_logits, adversarial_logits, beta):
    """The per-example TRADES objective: CE(f(x), y) + beta KL(f(x) || f(x'))."""
    clean_logits = ops.cast(clean_logits, "float32")
    return (common.cross_entropy(clean_logits, y)
            + beta * kl_divergence(clean_logits, adversarial_logits))
