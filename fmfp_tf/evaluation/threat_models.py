"""Threat models: who crafts the adversarial examples, and how the defended model is queried.

| name | crafted on | predictions |
| --- | --- | --- |
| white-box | the evaluated model itself, at inference (FM/FP inactive unless test_time) | one forward pass |
| transfer | a source model (default: the undefended twin: same dataset, model, seed) | one forward pass |
| adaptive | the evaluated model with EOT over its test-time randomness | averaged over EOT draws |

`adaptive` only differs from `white-box` for models whose FM/FP layers run at test time; for
deterministic models it is skipped (the white-box numbers already are the adaptive ones).
"""
import numpy as np

from fmfp_tf.attacks.common import predict_logits
from fmfp_tf.attacks.eot import eot_model
from fmfp_tf.errors import UsageError
from fmfp_tf.layers.base import RandomImageDefense

THREAT_MODELS = ("white-box", "transfer", "adaptive")


def check_threats(threats):
    unknown = [t for t in threats if t not in THREAT_MODELS]
    if unknown or not threats:
        raise UsageError(
            f"unknown threat model(s) {', '.join(unknown) or '(none given)'}; expected "
            f"{', '.join(THREAT_MODELS)}"
        )
    return list(threats)


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def is_randomised_at_test_time(model):
    """Whether any defense layer (every `RandomImageDefense`, not only FM and FP) of `model` is
    active at inference, so two calls on the same input can differ."""
    return any(isinstance(layer, RandomImageDefense) and layer.test_time
               for layer in _all_layers(model))


def attacked_model(threat, target, source, eot_samples):
    """The model whose gradients craft the examples under `threat`."""
    if threat == "transfer":
        return source
    if threat == "adaptive":
        return eot_model(target, eot_samples)
    return target


def predict_labels(threat, model, x, eot_samples, batch_size=512):
    """Class predictions of the evaluated model under `threat` (averaged draws if adaptive)."""
    scorer = eot_model(model, eot_samples) if (
        threat == "adaptive" and is_randomised_at_test_time(model)) else model
    if not len(x):
        return np.zeros(0, int)
    return predict_logits(scorer, x, batch_size).argmax(-1)
