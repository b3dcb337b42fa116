"""An AutoAttack-style ensemble (Croce & Hein 2020): robust accuracy is the share of images that
survive *every* attack, attack by attack on the images still standing.

| version | attacks | for |
| --- | --- | --- |
| standard | APGD-CE, APGD-T (targeted DLR, 9 targets), FAB-T (9 targets), Square (5,000 queries) | deterministic models |
| rand | APGD-CE and APGD-DLR, each with EOT over 20 draws | models random at inference |

The standard version is AutoAttack's as RobustBench runs it (L-inf): the same four attacks in the
same order, each on the inputs the previous ones left.
"""
import collections
import dataclasses
import inspect
import typing

import numpy as np

from fmfp_tf.attacks import common, counting
from fmfp_tf.attacks import precision as precision_lib
from fmfp_tf.attacks.apgd import apgd
from fmfp_tf.attacks.eot import eot_model
from fmfp_tf.attacks.fab import fab
from fmfp_tf.attacks.square import square
from fmfp_tf.errors import UsageError
from fmfp_tf.settings import MAX_COUNT, Settings, setting

VERSIONS = ("standard", "rand")
EOT_DRAWS = 20


@dataclasses.dataclass(frozen=True)
class AutoAttackSettings(Settings):
    """The ensemble's effort in an evaluation, shared by its components as in AutoAttack."""

    prefix: typing.ClassVar[str] = "autoattack"
    steps: int = setting(100, "APGD's and FAB-T's iterations inside AutoAttack",
                         minimum=1, maximum=MAX_COUNT)
    target_classes: int = setting(9, "APGD-T's and FAB-T's targets inside AutoAttack",
                                  minimum=1, maximum=MAX_COUNT)
    queries: int = setting(5000, "Square's queries inside AutoAttack", minimum=1, maximum=MAX_COUNT)


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


def planned_passes(function, kwargs):
    """Forward and backward passes per image of one planned attack, at most, in the unit
    `counting` counts (a gradient is a forward and a backward pass). A stage function of
    another ensemble declares its own as `function.planned_passes(kwargs)`."""
    if hasattr(function, "planned_passes"):
        return function.planned_passes(kwargs)
    if function is square:
        return counting.Passes(kwargs["queries"] + 1, 0)
    runs = kwargs.get("target_classes", 1)  # targeted attacks: one run per target
    if function is fab:  # a gradient and a forward check per step
        return counting.Passes(2 * kwargs["steps"] * runs + 1, kwargs["steps"] * runs)
    gradients = (kwargs["steps"] + 1) * runs * kwargs.get("eot_draws", 1)
    return counting.Passes(gradients + 1, gradients)


def passes(function, kwargs):
    """The weight of one planned attack in the ensemble's progress: its gradients per image, a
    forward-only pass counting 1/3 (about its share of a gradient's time)."""
    planned = planned_passes(function, kwargs)
    return planned.backward + (planned.forward - planned.backward) / 3


@common.takes_bounds
def autoattack(model, x, y, eps=8 / 255, version="standard", steps=100, target_classes=9,
               queries=5000, eot_draws=EOT_DRAWS, seed=0, precision="float32", batch_size=256,
               progress=None, log=None, stages=None, ids=None):
    """Per image, the first adversarial example any attack of the ensemble finds (else the input).

    Each attack runs only on the images that every earlier attack left correctly classified, so
    the accuracy on the result is the per-image worst case over the ensemble.
    `log(name, robust_fraction)` is called after each attack, with the share still robust;
    `progress(k, total)` after each of the `total` attacks. APGD-T
    and FAB-T use min(target_classes, classes - 1) targets; `eot_draws` is the number of draws
    each gradient of the "rand" version averages. `precision="bfloat16"` computes APGD's and
    FAB-T's steps on a bfloat16 twin of the model (standard version); every success, and so
    which images go on to the next attack, is decided in float32 on the model itself.
    `stages`: where finished attacks are kept, so that an interrupted ensemble resumes after the
    last attack it finished: an object with `save(name, arrays)` and `load(name)` -> the dict of
    arrays saved, or None (`cells.CellStore.stages(key)`); the caller keys it on everything the
    result depends on (model, images, labels, parameters).
    `ids`: one integer per image naming it in the evaluation's sample (default 0..N-1); every
    random draw for an image derives from (seed, id), so its result does not depend on the
    batch, shard or device it is crafted in.

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
    return run_plan(model, x, y, eps, attacks, seed, precision, batch_size, progress, log,
                    stages, ids)


def run_plan(model, x, y, eps, attacks, seed=0, precision="float32", batch_size=256,
             progress=None, log=None, stages=None, ids=None):
    """Runs an ensemble's `attacks` ((name, function, kwargs), in order), each on the images
    every earlier one left correctly classified; returns the examples (the inputs where none
    was found). A kwargs entry `select(model, x, y) -> bool mask` limits an attack to some of
    those images (a gradient-free stage only where gradients look masked). Checked inputs."""
    seed, ids = common.seed_of(seed), common.image_ids(ids, len(x))
    with counting.counted() as spent:  # this call's passes, kept with the stages
        return _run_plan(model, x, y, eps, attacks, seed, precision, batch_size, progress, log,
                         stages, spent, ids)


def _run_plan(model, x, y, eps, attacks, seed, precision, batch_size, progress, log, stages,
              spent, ids):
    out = x.copy()
    clean = _logits(model, x, batch_size)
    robust = clean.argmax(-1) == y
    clean_margin = np.maximum(_margins(clean, y), 1e-12)  # a tie is no division by zero
    # the evidence a later stage may read (a stage function with a `share` parameter): per
    # image, the smallest share of its clean margin z_y - max z_other left at the points the
    # earlier stages returned (their highest-loss points where they failed); 1 before any
    share = np.ones(len(x), np.float32)
    history = []  # the share still robust after each attack, for `log` and the stages
    kept = _last_kept(stages, attacks, len(x))
    if kept is not None:
        robust, history = kept.robust, kept.history
        out[kept.fooled] = kept.found
        if kept.share is not None:
            share = kept.share
        if kept.passes is not None:  # what the kept attacks cost when they ran counts too
            counting.add_passes(kept.passes)
    # attacks read back cost no time: counting them done would shorten the time left
    # a stage that selects its images is forecast at nothing until it has selected them
    tally = _Tally(progress, [0 if index < len(history) else passes(function, kwargs)
                              for index, (_, function, kwargs) in enumerate(attacks)],
                   [kwargs.get("select") is not None for _, _, kwargs in attacks])
    for index, (name, function, kwargs) in enumerate(attacks):
        if index < len(history):  # kept from an earlier, interrupted run
            tally.start(index, 0, robust)
            if log is not None and not np.isnan(history[index]):
                log(name, history[index])
            tally.finish(robust)
            continue
        todo = np.flatnonzero(robust)
        kwargs = dict(kwargs)
        select = kwargs.pop("select", None)
        if select is not None and len(todo):
            todo = todo[np.asarray(select(model, x[todo], y[todo]), bool)]
        tally.start(index, len(todo), robust)
        if len(todo):
            kwargs = dict(kwargs, progress=tally.inner)
            attacked = model
            draws = kwargs.pop("eot_draws", None)
            if draws:
                attacked = eot_model(model, draws)
            if function is not square and precision != "float32":
                kwargs["precision"] = precision
            if "share" in inspect.signature(function).parameters:
                kwargs["share"] = share[todo]
            found = function(attacked, x[todo], y[todo], eps=eps, seed=seed + index,
                             batch_size=batch_size, ids=ids[todo], **kwargs)
            logits = _logits(attacked, found, batch_size)
            fooled = logits.argmax(-1) != y[todo]
            out[todo[fooled]] = found[fooled]
            robust[todo[fooled]] = False
            left = todo[~fooled]
            share[left] = np.minimum(share[left], _margins(logits[~fooled], y[left])
                                     / clean_margin[left])
        history.append(float(robust.mean()) if len(robust) else 0.0)
        if stages is not None and len(todo):
            changed = np.flatnonzero(np.any(out != x, axis=tuple(range(1, x.ndim))))
            stages.save(name, {"robust": robust, "fooled": changed, "found": out[changed],
                               "history": np.asarray(history, np.float64),
                               "passes": np.asarray([spent.forward, spent.backward], np.int64),
                               "share": share})
        if log is not None:
            log(name, history[-1])
        tally.finish(robust)
    return out


_Kept = collections.namedtuple("_Kept", "robust fooled found history passes share")


def _last_kept(stages, attacks, n):
    """What the last attack `stages` kept for these n images had left: which images stand, the
    examples found so far, the share robust after each attack up to it (NaN where not kept)."""
    if stages is None:
        return None
    for index in range(len(attacks) - 1, -1, -1):
        saved = stages.load(attacks[index][0])
        try:
            robust = np.asarray(saved["robust"], bool).copy()
            fooled = np.asarray(saved["fooled"], np.int64)
            found = np.asarray(saved["found"], np.float32)
        except (TypeError, KeyError):
            continue
        if len(robust) != n or len(fooled) != len(found) or np.any(fooled >= n):
            continue
        history = [float(v) for v in saved.get("history", [])][:index + 1]
        history = history + [float("nan")] * (index + 1 - len(history))
        history[index] = float(robust.mean()) if n else 0.0
        passes = None
        if "passes" in saved and np.shape(saved["passes"]) == (2,):
            passes = counting.Passes(*(int(v) for v in saved["passes"]))
        share = None  # stages kept before the evidence was: a later stage reads none (1)
        if "share" in saved and np.shape(saved["share"]) == (n,):
            share = np.asarray(saved["share"], np.float32).copy()
        return _Kept(robust, fooled, found, history, passes, share)
    return None


class _Tally:
    """The ensemble's progress in passes over images, so that the time left weighs APGD-T's nine
    targets and Square's queries, not one step per attack: the attacks done, the running one's
    share from its own progress, and the later ones on the images still robust (at most)."""

    def __init__(self, progress, costs, selective=None):
        self.progress, self.costs = progress, costs
        self.selective = selective or [False] * len(costs)
        self.done = self.running = 0.0
        self.index = self.attacked = self.standing = self.images = 0

    def start(self, index, attacked, robust):
        """Attack `index` starts on `attacked` of the images still `robust` (a bool mask)."""
        self.index, self.attacked = index, attacked
        self.standing, self.images = int(robust.sum()), len(robust)
        self.running = self.costs[index] * self.attacked

    def _report(self, share, still_robust):
        later = sum(cost for cost, selective in zip(self.costs[self.index + 1:],
                                                    self.selective[self.index + 1:])
                    if not selective) * round(still_robust * self.images)
        done = self.done + self.running * share
        total = done + self.running * (1 - share) + later
        common.report(self.progress, int(done), max(int(total), 1), still_robust)

    def inner(self, k, total, robust=None):
        """An attack's own progress(k, total, robust) on the images it attacks."""
        kept = self.attacked * (1.0 if robust is None else robust)
        left = (self.standing - self.attacked + kept) / max(self.images, 1)
        self._report(k / max(total, 1), float(left))

    def finish(self, robust):
        """After an attack: its passes are done; the last one reports k == total."""
        self.done, self.running = self.done + self.running, 0.0
        still = float(robust.mean()) if len(robust) else 0.0
        if self.index + 1 < len(self.costs):
            self._report(1.0, still)
        else:
            total = max(int(self.done), 1)
            common.report(self.progress, total, total, still)


def _logits(model, x, batch_size):
    if not len(x):
        return np.zeros((0, 1), np.float32)
    return common.predict_logits(model, x, batch_size)


def _margins(logits, y):
    """z_y - max z_other per image (positive where it is classified correctly)."""
    if not len(y):
        return np.zeros(0, np.float32)
    return common.numpy(common.margin(common.tensor(logits), common.tensor(y)))
