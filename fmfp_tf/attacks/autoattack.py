"""An AutoAttack-style ensemble (Croce & Hein 2020): robust accuracy is the share of images that
survive *every* attack, attack by attack on the images still standing.

| version | attacks | for |
| --- | --- | --- |
| standard | APGD-CE, APGD-T (targeted DLR, 9 targets), FAB-T (9 targets), Square (5,000 queries) | deterministic models |
| rand | APGD-CE and APGD-DLR, each with EOT over 20 draws | models random at inference |

The standard version is AutoAttack's as RobustBench runs it (L-inf): the same four attacks in the
same order, each on the inputs the previous ones left.
"""
import dataclasses
import typing

import numpy as np

from fmfp_tf.attacks import common
from fmfp_tf.attacks import precision as precision_lib
from fmfp_tf.attacks.apgd import apgd
from fmfp_tf.attacks.eot import eot_model
from fmfp_tf.attacks.fab import fab
from fmfp_tf.attacks.square import square
from fmfp_tf.errors import UsageError
from fmfp_tf.settings import Settings, setting

VERSIONS = ("standard", "rand")
EOT_DRAWS = 20


@dataclasses.dataclass(frozen=True)
class AutoAttackSettings(Settings):
    """The ensemble's effort in an evaluation, shared by its components as in AutoAttack."""

    prefix: typing.ClassVar[str] = "autoattack"
    steps: int = setting(100, "APGD's and FAB-T's iterations inside AutoAttack", minimum=1)
    target_classes: int = setting(9, "APGD-T's and FAB-T's targets inside AutoAttack", minimum=1)
    queries: int = setting(5000, "Square's queries inside AutoAttack", minimum=1)


def plan(version="standard", steps=100, target_classes=9, queries=5000, eot_draws=EOT_DRAWS):
    """The ensemble's attacks, in order, as (name, function, keyword arguments)."""
    if version == "standard":
        return [("apgd-ce", apgd, {"loss": "ce", "steps": steps}),
                ("apgd-t", apgd, {"loss": "dlr", "targeted": True, "steps": steps,
                                  "target_classes": target_classes}),
                ("fab-t", fab, {"steps": steps, "target_classes": target_classes}),
                ("square", square, {"queries": queries})]
    if version == "rand":
        return [("apgd-ce", apgd, {"loss": "ce", "steps": steps, "eot_draws": eot_draws}),
                ("apgd-dlr", apgd, {"loss": "dlr", "steps": steps, "eot_draws": eot_draws})]
    raise UsageError(f"version must be one of {', '.join(VERSIONS)}; got {version!r}")


def autoattack(model, x, y, eps=8 / 255, version="standard", steps=100, target_classes=9,
               queries=5000, eot_draws=EOT_DRAWS, seed=0, precision="float32", batch_size=256,
               progress=None, log=None):
    """Per image, the first adversarial example any attack of the ensemble finds (else the input).

    Each attack runs only on the images that every earlier attack left correctly classified, so
    the accuracy on the result is the per-image worst case over the ensemble.
    `log(name, robust_fraction)` is called after each attack, with the share still robust;
    `progress(k, total)` after each of the `total` attacks. APGD-T
    and FAB-T use min(target_classes, classes - 1) targets; `eot_draws` is the number of draws
    each gradient of the "rand" version averages. `precision="bfloat16"` computes APGD's and
    FAB-T's steps on a bfloat16 twin of the model (standard version); every success, and so
    which images go on to the next attack, is decided in float32 on the model itself.

    Returns float32 images within eps (L-inf) and in [0, 1].
    """
    eps = common.parse_eps(eps)
    x = common.check_images(x)
    num_classes = common.num_classes_of(model, x)
    y = common.check_labels(y, len(x), num_classes)
    if num_classes is not None:
        # as many targets as there are other classes, on datasets with fewer than 10 classes
        target_classes = min(target_classes, num_classes - 1)
    eot_draws = common.check_positive_int("eot_draws", eot_draws)
    precision_lib.check(precision)
    if precision != "float32" and version == "rand":
        raise UsageError("precision='bfloat16' is for the standard version; the rand version "
                         "attacks an average over draws, which has no bfloat16 twin")
    attacks = plan(version, steps, target_classes, queries, eot_draws)
    out = x.copy()
    robust = _correct(model, x, y, batch_size)
    for index, (name, function, kwargs) in enumerate(attacks):
        todo = np.flatnonzero(robust)
        if len(todo):
            kwargs = dict(kwargs)
            attacked = model
            draws = kwargs.pop("eot_draws", None)
            if draws:
                attacked = eot_model(model, draws)
            if function is not square and precision != "float32":
                kwargs["precision"] = precision
            found = function(attacked, x[todo], y[todo], eps=eps, seed=seed + index,
                             batch_size=batch_size, **kwargs)
            fooled = ~_correct(attacked, found, y[todo], batch_size)
            out[todo[fooled]] = found[fooled]
            robust[todo[fooled]] = False
        if log is not None:
            log(name, float(robust.mean()) if len(robust) else 0.0)
        common.report(progress, index + 1, len(attacks),
                      float(robust.mean()) if len(robust) else 0.0)
    return out


def _correct(model, x, y, batch_size):
    if not len(x):
        return np.zeros(0, bool)
    return common.predict_logits(model, x, batch_size).argmax(-1) == y
