"""`autoattack-fast`: an ensemble meant to be as strong as the standard AutoAttack at a tenth of
its forward and backward passes. It is not the standard AutoAttack and reports say so.

Why it can be cheap: on every robust model this project measured, FAB-T and Square took no image
after APGD-CE and APGD-T, yet the standard ensemble spends about 3,870 passes on each image that
survives (APGD-CE 100, APGD-T 900, FAB-T 1,200, Square 5,000 queries). A3 (Liu et al., CVPR 2022)
showed that most of those passes go to images that will not fall, and MM (Gao et al., ICML 2022)
that a targeted margin loss over the few likeliest classes does most of APGD-T's work.

| stage | what | passes per image at most (defaults) |
| --- | --- | --- |
| apgd-ce | APGD, cross-entropy, `steps` iterations | 26 gradients |
| apgd-t | APGD, targeted DLR, `target_steps` each: one run per class among the `target_classes` likeliest other classes; then, for the survivors that kept less than `close_margin` (0.45) of their clean margin, the classes ranked after them (up to `close_targets`); for the survivors whose margin came below `restart_margin` (0.15) of it at any stage's point, one APGD-CE restart of `close_steps` from a new random start | 3 x 26, plus 6 x 26 on the close survivors and 101 on the closest |
| square | Square Attack, `queries` queries, only on images whose input gradient is zero or not finite (masked) or on a model random at inference | 1,000 forward |

Each stage attacks only the images every earlier stage left correctly classified, and a result
counts per image in the worst case like any attack. The last stage is where the standard
ensemble's FAB-T and Square earned their place: on models whose gradients carry no signal. On a
model random at inference the gradient stages attack the EOT average (as AutoAttack's `rand`
version does) and Square always runs.
"""
import dataclasses
import typing

import numpy as np

from fmfp_tf.attacks import common, counting
from fmfp_tf.attacks import precision as precision_lib
from fmfp_tf.attacks.apgd import apgd
from fmfp_tf.attacks.autoattack import EOT_DRAWS, run_plan
from fmfp_tf.attacks.square import square
from fmfp_tf.errors import UsageError
from fmfp_tf.settings import MAX_COUNT, Settings, setting


@dataclasses.dataclass(frozen=True)
class FastAutoAttackSettings(Settings):
    """The fast ensemble's budget (`--attacks autoattack-fast`)."""

    prefix: typing.ClassVar[str] = "autoattack_fast"
    steps: int = setting(25, "APGD-CE's iterations in the fast ensemble",
                         minimum=1, maximum=MAX_COUNT)
    target_steps: int = setting(25, "APGD-T's iterations per target in the fast ensemble",
                                minimum=1, maximum=MAX_COUNT)
    target_classes: int = setting(3, "APGD-T's targets for every image: the likeliest other "
                                     "classes by the clean logits", minimum=1, maximum=MAX_COUNT)
    close_targets: int = setting(9, "APGD-T's targets, up to this rank, for the images closest "
                                    "to the boundary (AutoAttack's 9)",
                                 minimum=1, maximum=MAX_COUNT)
    close_margin: float = setting(0.45, "the further targets go to the images left whose margin "
                                        "at their highest-loss point is below this share of "
                                        "their clean margin", above=0.0, maximum=1.0)
    close_steps: int = setting(100, "APGD-CE's iterations in one restart from a new random "
                                    "start for the images closest to the boundary",
                               minimum=1, maximum=MAX_COUNT)
    restart_margin: float = setting(0.15, "the APGD-CE restart goes to the images left whose "
                                          "margin at the lowest point any stage reached is "
                                          "below this share of their clean margin",
                                    above=0.0, maximum=1.0)
    queries: int = setting(1000, "Square's queries in the fast ensemble, on images whose "
                                 "gradient looks masked (every image of a random model)",
                           minimum=1, maximum=MAX_COUNT)


def targets_by_evidence(model, x, y, eps=8 / 255, steps=25, target_classes=3,
                        close_targets=9, close_margin=0.45, close_steps=100,
                        restart_margin=0.15, share=None, seed=0, precision="float32",
                        batch_size=256, progress=None, ids=None):
    """APGD-T (targeted DLR) on the `target_classes` likeliest other classes of every image;
    then, for the images still standing whose margin z_y - max z_other at their highest-loss
    point is below `close_margin` times their clean margin, APGD-T on the classes ranked
    after them, up to `close_targets`; and for the images still standing whose margin came
    below `restart_margin` times their clean margin, here or in an earlier stage (`share`:
    per image, the smallest share of its clean margin an earlier stage left, as `run_plan`
    passes it), one APGD-CE run of `close_steps` iterations from a new random start. The
    images the attacks have brought near the boundary get the further budget, the others are
    not attacked further. The rules read each image alone, so an image's result does not
    depend on the others attacked with it."""
    common.check_budget("close_margin", close_margin, 0.0, 1.0, low_open=True)
    common.check_budget("restart_margin", restart_margin, 0.0, 1.0, low_open=True)
    close_targets = max(common.check_positive_int("close_targets", close_targets),
                        target_classes)
    if not len(x):
        return x.copy()
    ids = common.image_ids(ids, len(x))
    further = min(close_targets, common.num_classes_of(model, x) - 1) - target_classes
    planned = target_classes + max(further, 0) + 1  # runs, for the progress

    def report_from(done):
        return lambda k, total, robust=None: common.report(
            progress, done * common.RUN_UNITS + k, planned * common.RUN_UNITS, robust)

    out = apgd(model, x, y, eps=eps, loss="dlr", targeted=True, steps=steps,
               target_classes=target_classes, seed=seed, precision=precision,
               batch_size=batch_size, progress=report_from(0), ids=ids)
    logits = common.predict_logits(model, out, batch_size)
    standing = np.flatnonzero(logits.argmax(-1) == y)
    close = closest = standing[:0]
    if len(standing):
        # the evidence: how much of its clean margin z_y - max z_other each standing image
        # has kept at its highest-loss point (on dnn1 N-FGSM every image the standard
        # AutoAttack broke after this point had kept less than 0.44 of it; docs/evaluation.md)
        clean = common.predict_logits(model, x[standing], batch_size)
        kept, before = (common.numpy(common.margin(common.tensor(z), common.tensor(y[standing])))
                        for z in (logits[standing], clean))
        close = standing[kept < close_margin * before]
        # the restart's evidence also reads the earlier stages: an image APGD-CE brought to
        # the boundary may stand far from it after the targets (on dnn1 N-FGSM every image the
        # restart took had come below 0.06 of its margin somewhere; docs/evaluation.md)
        lowest = kept / before if share is None else np.minimum(kept / before,
                                                                share[standing])
        closest = standing[lowest < restart_margin]
    if not (len(close) or len(closest)):
        common.report(progress, planned * common.RUN_UNITS, planned * common.RUN_UNITS,
                      len(standing) / len(x))
        return out
    if further >= 1 and len(close):
        ranked = np.argsort(-clean[np.searchsorted(standing, close)], axis=-1, kind="stable")
        out[close] = apgd(model, x[close], y[close], eps=eps, loss="dlr", targeted=True,
                          steps=steps, targets=ranked[:, 1 + target_classes:1 + target_classes
                                                      + further],
                          seed=seed + 1, precision=precision, batch_size=batch_size,
                          progress=report_from(target_classes), ids=ids[close])
        fallen = close[common.predict_logits(model, out[close], batch_size).argmax(-1)
                       != y[close]]
        closest = np.setdiff1d(closest, fallen)
    # a longer untargeted run from a new start: on dnn1 N-FGSM it took 6 of the 16 close
    # images the standard broke, each one that had come below 0.06 of its clean margin
    if len(closest):
        out[closest] = apgd(model, x[closest], y[closest], eps=eps, loss="ce",
                            steps=close_steps, seed=seed + 2, precision=precision,
                            batch_size=batch_size, progress=report_from(planned - 1),
                            ids=ids[closest])
    common.report(progress, planned * common.RUN_UNITS, planned * common.RUN_UNITS)
    return out


def _targets_passes(kwargs):
    """At most: every image through the likeliest targets and the further ones (which images
    are close is known only once the first targets have run)."""
    gradients = ((kwargs["steps"] + 1) * max(kwargs["close_targets"], kwargs["target_classes"])
                 + kwargs["close_steps"] + 1)
    return counting.Passes(gradients + 5, gradients)


targets_by_evidence.planned_passes = _targets_passes


def masked_gradient(model, x, y, batch_size=256):
    """Per image, whether the cross-entropy's input gradient is all zero or not finite: a
    gradient attack has nothing to follow there."""
    flagged = np.zeros(len(x), bool)
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        grad = common.numpy(common.loss_gradient(model, common.tensor(x[part]),
                                                 common.tensor(y[part]))[0])
        counting.add(model, len(grad), forward=1, backward=1)
        grad = grad.reshape(len(grad), -1)
        flagged[part] = np.all(grad == 0, axis=1) | ~np.all(np.isfinite(grad), axis=1)
    return flagged


def plan(steps=25, target_steps=25, target_classes=3, close_targets=9, close_margin=0.45,
         close_steps=100, queries=1000, eot_draws=None, restart_margin=0.15):
    """The fast ensemble's stages, in order, as (name, function, keyword arguments);
    `eot_draws` (a model random at inference) averages each gradient over that many draws and
    runs Square on every image left."""
    gradient = {"eot_draws": eot_draws} if eot_draws else {}
    select = None if eot_draws else masked_gradient
    return [("apgd-ce", apgd, {"loss": "ce", "steps": steps, **gradient}),
            ("apgd-t", targets_by_evidence,
             {"steps": target_steps, "target_classes": target_classes,
              "close_targets": close_targets, "close_margin": close_margin,
              "close_steps": close_steps, "restart_margin": restart_margin, **gradient}),
            ("square", square, {"queries": queries, "select": select})]


@common.takes_bounds
def autoattack_fast(model, x, y, eps=8 / 255, steps=25, target_steps=25, target_classes=3,
                    close_targets=9, close_margin=0.45, close_steps=100, queries=1000,
                    randomized=False, restart_margin=0.15,
                    eot_draws=EOT_DRAWS, seed=0, precision="float32", batch_size=256,
                    progress=None, log=None, stages=None, ids=None):
    """Per image, the first adversarial example any stage finds (else the input), L-inf.

    Args:
        model: a Keras model (called with training=False) or a callable x -> logits.
        x, y: images in [0, 1] (N, H, W, C) and their true labels.
        eps: L-inf budget, a number or a string like '8/255'.
        steps: APGD-CE's iterations; target_steps, target_classes: APGD-T's iterations per
            target and its targets for every image, the classes ranked 2nd.. by the clean
            logits (at most the classes other than the true one).
        close_targets, close_margin: the further targets, up to rank `close_targets`, for the
            images left that kept less than `close_margin` of their clean margin.
        close_steps, restart_margin: one APGD-CE restart of `close_steps` iterations for the
            images left whose margin came below `restart_margin` of their clean margin at the
            point of any stage (APGD-CE's, the first targets').
        queries: Square's budget on the images whose gradient is zero or not finite (all images
            left when `randomized`).
        randomized: the model is random at inference: the gradient stages attack the average
            over `eot_draws` draws and Square runs on every image left.
        precision: "bfloat16" runs the APGD stages on a bfloat16 twin; every success is decided
            in float32 on the model itself.
        progress, log, stages: as `autoattack` (progress in passes, the share robust after each
            stage, the finished stages kept for a resume).
        ids: one integer per image naming it in the evaluation's sample (default 0..N-1): its
            random draws derive from (seed, id), whatever batch, shard or device it is in.

    Returns float32 images within eps and in [0, 1].
    """
    eps = common.parse_eps(eps)
    x = common.check_images(x)
    num_classes = common.num_classes_of(model, x)
    y = common.check_labels(y, len(x), num_classes)
    for name, value in (("steps", steps), ("target_steps", target_steps),
                        ("target_classes", target_classes), ("close_targets", close_targets),
                        ("close_steps", close_steps), ("queries", queries),
                        ("eot_draws", eot_draws)):
        common.check_positive_int(name, value)
    common.check_budget("close_margin", close_margin, 0.0, 1.0, low_open=True)
    common.check_budget("restart_margin", restart_margin, 0.0, 1.0, low_open=True)
    if num_classes is not None:
        target_classes = min(target_classes, num_classes - 1)
    precision_lib.check(precision)
    if precision != "float32" and randomized:
        raise UsageError("precision='bfloat16' is for deterministic models; a model random at "
                         "inference is attacked through an average over draws")
    stages_plan = plan(steps, target_steps, target_classes, min(close_targets, num_classes - 1)
                       if num_classes is not None else close_targets, close_margin, close_steps,
                       queries,
                       eot_draws if randomized else None, restart_margin)
    return run_plan(model, x, y, eps, stages_plan, seed, precision, batch_size, progress, log,
                    stages, ids)
