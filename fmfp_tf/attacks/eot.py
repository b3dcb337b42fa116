"""Expectation over Transformation (Athalye et al. 2018) for models random at inference.

A model whose FM/FP layers run at test time (`test_time=True`) gives a different output on every
call. EOT attacks the expected prediction instead: `eot_model` averages the softmax over `samples`
draws and returns its log (so attacks that work on logits see log E[p(y|x)]), and `eot(attack)`
runs any attack of this package against that average.
"""
import keras
from keras import ops

from fmfp_tf.attacks import common


class EOTModel(keras.layers.Layer):
    """Callable x -> log of the softmax averaged over `samples` stochastic forward passes."""

    def __init__(self, model, samples, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.samples = common.check_positive_int("samples", samples)
        # each call runs the model `samples` times: the pass counts say so
        self.passes_per_call = self.samples * int(getattr(model, "passes_per_call", 1))

    def call(self, x, training=False):
        total = 0.0
        for _ in range(self.samples):
            total = total + ops.softmax(common.logits_of(self.model, x), -1)
        return ops.log(total / float(self.samples) + 1e-12)


def eot_model(model, samples=10):
    return EOTModel(model, samples)


def eot(attack, samples=10):
    """Returns attack' with attack'(model, x, y, **kw) = attack(eot_model(model), x, y, **kw)."""
    samples = common.check_positive_int("samples", samples)

    def attack_with_eot(model, x, y, **kwargs):
        return attack(eot_model(model, samples), x, y, **kwargs)

    attack_with_eot.__name__ = f"eot_{getattr(attack, '__name__', 'attack')}"
    return attack_with_eot
