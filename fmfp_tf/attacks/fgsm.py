"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps."""
from keras import ops

from fmfp_tf.attacks import common, counting


def fgsm_graph(model, x, y, eps, clip_min=0.0, clip_max=1.0):
    """The core on tensors (usable inside a compiled train step): x + eps * sign(grad), clipped."""
    grad, _ = common.loss_gradient(model, x, y)
    return ops.clip(x + eps * ops.sign(grad), clip_min, clip_max)


@common.takes_bounds
def fgsm(model, x, y, eps=8 / 255, batch_size=256, progress=None):
    """Untargeted L-inf FGSM on a batch of images in [0, 1], from the model's logits.

    Args:
        model: a Keras model (called with training=False) or a callable x -> logits, on the
            current Keras backend.
        x: images, float (N, H, W, C) in [0, 1].
        y: true labels (N,), the attack increases their cross-entropy.
        eps: L-inf budget (a number or a string like '8/255').

    Returns adversarial images as float32 numpy, with max |x_adv - x| <= eps and values in [0, 1].
    """
    eps = common.parse_eps(eps)
    x = common.check_images(x)
    y = common.check_labels(y, len(x), common.num_classes_of(model, x))
    run = common.compiled(fgsm_graph, model, batch=("x", "y"))

    def attack(a, b, _):
        counting.add(model, len(a), forward=1, backward=1)
        return run(common.tensor(a), common.tensor(b), common.tensor(eps, "float32"))

    return common.batched(attack, x, y, batch_size, progress)
