"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): PGD whose step size needs no tuning.

Per example, the step size starts at 2 eps and is halved at checkpoints where the loss stalled (the
loss rose in fewer than 75 % of the steps since the last checkpoint, or the step size was not cut
at the last checkpoint and the best loss has not improved since); after a cut the iterate restarts
from the best point so far. Steps use momentum 0.75. Checkpoints come after 22 % of the budget,
then after intervals that shrink by 3 % of the budget down to 6 %, as in the paper.

A run goes in stretches (after steps 1, 2, 4, 8, ...): between them, the images already
misclassified leave with their first misclassified point, which later steps could not change, so
no result changes and an image that falls at the first step costs two gradients, not the run's.

Losses: cross-entropy (`ce`), the Difference of Logits Ratio (`dlr`, invariant to the logits'
scale, so a model cannot hide behind huge logits), and its targeted form run once per target among
the `target_classes` highest-scoring other classes (APGD-T).
"""
import dataclasses
import typing

import numpy as np
from keras import ops

from fmfp_tf.attacks import common, counting
from fmfp_tf.attacks import precision as precision_lib
from fmfp_tf.attacks.common import per_example, project
from fmfp_tf.errors import UsageError
from fmfp_tf.settings import MAX_COUNT, Settings, setting

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75
STALL_FRACTION = 0.75  # fewer rises than this share of the steps since the last checkpoint


@dataclasses.dataclass(frozen=True)
class APGDSettings(Settings):
    """APGD-CE's, APGD-DLR's and APGD-T's effort in an evaluation."""

    prefix: typing.ClassVar[str] = "apgd"
    steps: int = setting(100, "APGD iterations per restart (and per target)",
                         minimum=1, maximum=MAX_COUNT)
    restarts: int = setting(1, "APGD's random restarts", minimum=1, maximum=MAX_COUNT)
    target_classes: int = setting(9, "APGD-T: one run per class ranked 2nd.. by the clean logits",
                                  minimum=1, maximum=MAX_COUNT)


def checkpoint_lengths(steps):
    """Steps between checkpoints: 22 % of the budget, then 3 % less each time, at least 6 %."""
    first = max(int(0.22 * steps), 1)
    shrink, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    lengths, length = [], first
    while sum(lengths) < steps:
        lengths.append(length)
        length = max(length - shrink, shortest)
    return lengths


def dlr_loss(logits, y):
    """-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3): positive once the example is misclassified."""
    ordered = ops.sort(logits, -1)  # ascending: the largest last
    return -common.margin(logits, y) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def targeted_dlr_loss(logits, y, target):
    """-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), maximised to push the target above y."""
    ordered = ops.sort(logits, -1)
    return -(common.pick(logits, y) - common.pick(logits, target)) / (
        ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + 1e-12)


def _loss(name, logits, y, target):
    if name == "ce":
        return common.cross_entropy(logits, y)
    if name == "dlr":
        return dlr_loss(logits, y)
    return targeted_dlr_loss(logits, y, target)


def _loss_and_gradient(model, x, y, target, loss_name):
    def total(x):
        logits = common.logits_of(model, x)
        loss = _loss(loss_name, logits, y, target)
        return ops.sum(loss), (loss, logits)

    _, (loss, logits), grad = common.value_and_grad(total, x)
    return loss, grad, logits


def random_start(rng, shape, norm):
    """AutoAttack's start: a random direction scaled to the sphere of radius 1 of `norm`."""
    if norm == "inf":
        t = rng.uniform(-1.0, 1.0, shape)
        scale = np.abs(t).reshape(shape[0], -1).max(-1)
    else:
        t = rng.standard_normal(shape)
        scale = np.sqrt((t ** 2).reshape(shape[0], -1).sum(-1))
    return (t / scale.reshape(-1, 1, 1, 1)).astype(np.float32)


def schedule(steps):
    """(is_end, interval) over the steps: whether step i closes a checkpoint interval, and the
    length of the interval that step i belongs to."""
    lengths = checkpoint_lengths(steps)
    is_end = np.zeros(steps, bool)
    interval = np.zeros(steps, np.float32)
    start = 0
    for length in lengths:
        if start >= steps:
            break
        is_end[min(start + length, steps) - 1] = start + length <= steps
        interval[start:start + length] = length
        start += length
    return is_end, interval


STATE = ("x_adv", "x_prev", "grad", "loss", "step_size", "x_best", "grad_best", "loss_best",
         "x_found", "fooled", "rises", "loss_best_at_check", "cut_at_check")


def apgd_begin(model, x, y, target, eps, start, norm, loss_name):
    """A run's state at its random `start` (a point of the unit sphere per image,
    `random_start`): one gradient. `apgd_steps` carries it on."""
    x_adv = ops.clip(x + eps * start, 0.0, 1.0)
    loss, grad, logits = _loss_and_gradient(model, x_adv, y, target, loss_name)
    return dict(
        x_adv=x_adv, x_prev=x_adv, grad=grad, loss=loss,
        step_size=ops.ones_like(loss) * (2.0 * eps),
        x_best=x_adv, grad_best=grad, loss_best=loss,
        x_found=x_adv, fooled=common.predicted(logits) != y,
        rises=ops.zeros_like(loss), loss_best_at_check=loss,
        cut_at_check=ops.ones_like(loss, dtype="bool"),
    )


def apgd_steps(model, x, y, target, eps, is_end, interval, first, last, state, norm, loss_name):
    """Steps `first`..`last - 1` of a run from `state` (`apgd_begin`'s, or an earlier call's):
    one gradient per step; returns the state. Per image, `x_found` is the first point found
    misclassified (where `fooled`), `x_best` the highest-loss point. The checkpoints
    (`schedule(steps)`) and the step range are tensors, so one compiled program serves every
    budget and every range."""

    def step_towards(point, grad, step_size):
        moved = point + step_size * common.steepest(grad, norm)
        return ops.clip(x + project(moved - x, eps, norm), 0.0, 1.0)

    def body(i, s):
        momentum = ops.where(i > 0, MOMENTUM, 1.0)
        z = step_towards(s["x_adv"], s["grad"], per_example(s["step_size"]))
        moved = s["x_adv"] + momentum * (z - s["x_adv"]) + (1.0 - momentum) * (
            s["x_adv"] - s["x_prev"])
        x_new = ops.clip(x + project(moved - x, eps, norm), 0.0, 1.0)
        loss, grad, logits = _loss_and_gradient(model, x_new, y, target, loss_name)
        wrong = common.predicted(logits) != y
        newly = per_example(wrong & ~s["fooled"])
        better = loss > s["loss_best"]
        x_best = ops.where(per_example(better), x_new, s["x_best"])
        grad_best = ops.where(per_example(better), grad, s["grad_best"])
        loss_best = ops.where(better, loss, s["loss_best"])
        rises = s["rises"] + ops.cast(loss > s["loss"], "float32")
        # a checkpoint: halve the step where the loss stalled (or the best loss did not move
        # since the last checkpoint without a cut) and restart there from the best point, with
        # no momentum to carry; computed every step and selected where a checkpoint falls
        check = ops.take(is_end, i)
        stalled = rises <= STALL_FRACTION * ops.take(interval, i)
        no_progress = ~s["cut_at_check"] & (loss_best <= s["loss_best_at_check"])
        cut = check & (stalled | no_progress)
        back = per_example(cut)
        return i + 1, dict(
            x_adv=ops.where(back, x_best, x_new),
            x_prev=ops.where(back, x_best, s["x_adv"]),
            grad=ops.where(back, grad_best, grad), loss=loss,
            step_size=ops.where(cut, s["step_size"] / 2.0, s["step_size"]),
            x_best=x_best, grad_best=grad_best, loss_best=loss_best,
            x_found=ops.where(newly, x_new, s["x_found"]), fooled=s["fooled"] | wrong,
            rises=ops.where(check, 0.0, rises),
            loss_best_at_check=ops.where(check, loss_best, s["loss_best_at_check"]),
            cut_at_check=ops.where(check, cut, s["cut_at_check"]),
        )

    _, state = common.while_loop(lambda i, _: i < last, body, (first, dict(state)))
    return state


def stretches(steps):
    """Where a run stops to let the images it has fooled go: after steps 1, 2, 4, 8, ... and at
    the end. An image's later steps cannot change its result (the first misclassified point
    is kept), so leaving them out changes no result. Each stop costs a round trip to the host
    (and on JAX a padded batch), so the stops grow apart: an image that falls at step k runs at
    most 2k steps."""
    bounds, k = [], 1
    while k < steps:
        bounds.append(k)
        k *= 2
    return list(zip([0, *bounds], [*bounds, steps]))


def _run(model, crafter, x, y, target, start, eps, steps, is_end, interval, norm, loss_name,
         batch_size):
    """One run on a batch, stretch by stretch (`stretches`): before each, the images whose
    first misclassified point fools the model itself leave with it, the rest go on; at the
    end every image leaves. Returns per image (example, fooled, best loss): the example is
    the first point found misclassified, else the highest-loss point."""
    begin = common.compiled(apgd_begin, crafter, batch=("x", "y", "target", "start"))
    advance = common.compiled(apgd_steps, crafter, batch=("x", "y", "target", "state"))
    eps_t = common.tensor(eps, "float32")
    examples, highest = np.empty_like(x), np.empty_like(x)
    wrong, loss = np.zeros(len(x), bool), np.zeros(len(x), np.float32)
    checked = np.zeros(len(x), bool)  # fooled ones whose success the float32 model confirmed
    refuted = np.zeros(len(x), bool)  # fooled on the twin, not on the float32 model
    active = np.arange(len(x))
    counting.add(crafter, len(x), forward=1, backward=1)  # the gradient at the start
    state = begin(common.tensor(x), common.tensor(y), common.tensor(target), eps_t,
                  common.tensor(start), norm=norm, loss_name=loss_name)
    for first, last in [*stretches(steps), (steps, None)]:
        state = {name: common.numpy(value) for name, value in state.items()}
        confirmed = state["fooled"] & ~refuted[active]
        if crafter is not model and confirmed.any():  # a bfloat16 success counts in float32
            found = np.flatnonzero(confirmed)
            confirmed[found] = common.predict_logits(model, state["x_found"][found],
                                                     batch_size).argmax(-1) != y[active[found]]
            # its first misclassified point no longer moves: one check is its verdict
            refuted[active[found[~confirmed[found]]]] = True
        leaving = np.ones_like(confirmed) if last is None else confirmed
        rows = active[leaving]
        checked[rows] = confirmed[leaving]
        wrong[rows], loss[rows] = state["fooled"][leaving], state["loss_best"][leaving]
        highest[rows] = state["x_best"][leaving]
        examples[rows] = np.where(state["fooled"][leaving].reshape(-1, *[1] * (x.ndim - 1)),
                                  state["x_found"][leaving], state["x_best"][leaving])
        active = active[~leaving]
        if last is None or not len(active):
            break
        # a backend that compiles per shape (JAX) runs a few padded sizes, not every count
        padded = common.padded_rows(len(active), len(x))
        order = np.concatenate([np.arange(len(active)), np.zeros(padded - len(active), int)])
        rows = active[order]
        state = {name: common.tensor(value[~leaving][order]) for name, value in state.items()}
        counting.add(crafter, padded, forward=last - first, backward=last - first)
        state = advance(common.tensor(x[rows]), common.tensor(y[rows]),
                        common.tensor(target[rows]), eps_t, is_end, interval,
                        common.tensor(first), common.tensor(last), state, norm=norm,
                        loss_name=loss_name)
        state = {name: value[:len(active)] for name, value in state.items()}
    if crafter is not model:
        doubted = np.flatnonzero(~checked)
        if len(doubted):
            examples[doubted], wrong[doubted] = _checked_in_float32(
                model, examples[doubted], wrong[doubted], highest[doubted], y[doubted],
                batch_size)
    return examples, wrong, loss


def _checked_in_float32(model, candidate, wrong, highest, y, batch_size):
    """A success counts only on the float32 model. Where the bfloat16 twin's first "fooled"
    point does not fool it, the run's highest-loss point gets the same check."""
    wrong = common.predict_logits(model, candidate, batch_size).argmax(-1) != y
    doubted = np.flatnonzero(~wrong)
    if len(doubted):
        second = common.predict_logits(model, highest[doubted], batch_size).argmax(-1)
        rescued = doubted[second != y[doubted]]
        candidate[rescued], wrong[rescued] = highest[rescued], True
    return candidate, wrong


def _check_targets(targets, targeted, count, num_classes):
    if not targeted:
        raise UsageError("targets are for the targeted attack (targeted=True)")
    targets = np.asarray(targets)
    if targets.ndim != 2 or len(targets) != count or not targets.shape[1] or not np.issubdtype(
            targets.dtype, np.integer):
        raise UsageError(f"targets must be an integer array of shape ({count}, k); got "
                         f"{targets.dtype} {targets.shape}")
    if num_classes is not None and (targets.min() < 0 or targets.max() >= num_classes):
        raise UsageError(f"targets must lie in 0..{num_classes - 1}; got "
                         f"{targets.min()}..{targets.max()}")
    return targets.astype(np.int64)


@common.takes_bounds
def apgd(model, x, y, eps=8 / 255, norm="inf", loss="ce", steps=100, restarts=1,
         targeted=False, target_classes=9, targets=None, seed=0, precision="float32",
         batch_size=256, progress=None, ids=None):
    """Auto-PGD, untargeted (CE or DLR loss) or targeted (DLR over the top `target_classes`).

    Args:
        model: a Keras model (called with training=False) or a callable x -> logits.
        x, y: images in [0, 1] (N, H, W, C) and their true labels.
        eps: budget in `norm` ('inf' or '2'), a number or a string like '8/255'.
        loss: 'ce' or 'dlr'; with `targeted=True` the targeted DLR loss is used.
        steps: iterations per run (100 in AutoAttack).
        restarts: random restarts per run (per target when targeted); each example keeps the
            first run that fools the model, else the highest-loss one.
        target_classes: targeted only: one run per class ranked 2nd..(target_classes+1)th by
            the clean logits (9 in AutoAttack).
        targets: targeted only, instead of that ranking: an (N, k) array of class ids, one run
            per column (a class equal to the true label is skipped for that image).
        seed: the same seed gives the same examples.
        precision: "bfloat16" computes the steps on a bfloat16 twin of the model; whether an
            example fools the model is decided in float32 on the model itself.
        ids: one integer per image naming it in the evaluation's sample (default 0..N-1): its
            random starts derive from (seed, id), whatever batch it is crafted in.

    Returns float32 adversarial images within the budget and in [0, 1]. Gradients and losses are
    computed in float32 whatever the model's compute dtype.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(3)])
    >>> x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    >>> x_adv = apgd(model, x, np.array([0, 1, 2, 0]), eps=0.05, steps=10)
    >>> bool(np.abs(x_adv - x).max() <= 0.05 + 1e-6)
    True
    """
    eps = common.parse_eps(eps)
    norm = common.check_norm(norm)
    if loss not in LOSSES:
        raise UsageError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    steps = common.check_positive_int("steps", steps)
    restarts = common.check_positive_int("restarts", restarts)
    target_classes = common.check_positive_int("target_classes", target_classes)
    x = common.check_images(x)
    num_classes = common.num_classes_of(model, x)
    y = common.check_labels(y, len(x), num_classes)
    seed, ids = common.seed_of(seed), common.image_ids(ids, len(x))
    if targeted:
        # (given `targets`, they name the runs and `target_classes` is not read)
        if num_classes is not None and target_classes > num_classes - 1 and targets is None:
            raise UsageError(f"target_classes = {target_classes} exceeds the {num_classes - 1} "
                             "classes other than the true one")
        if num_classes is not None and num_classes < 4:
            raise UsageError("targeted APGD's DLR loss needs at least 4 classes")
    elif loss == "dlr" and num_classes is not None and num_classes < 3:
        raise UsageError("the DLR loss needs at least 3 classes")
    loss_name = "dlr-targeted" if targeted else loss
    if targets is not None:
        targets = _check_targets(targets, targeted, len(x), num_classes)
    if not len(x):
        return x.copy()
    # the budget and its checkpoints travel as tensors: one compiled program serves every budget
    is_end, interval = (common.tensor(a) for a in schedule(steps))
    crafter = precision_lib.crafting_model(model, precision)
    logits = common.predict_logits(model, x, batch_size)
    best = x.copy()
    fooled = logits.argmax(-1) != y  # already misclassified inputs are left as they are
    best_loss = np.full(len(x), -np.inf, np.float32)
    # targeted: one run per class ranked 2nd, 3rd, ... by the clean logits
    ranked = np.argsort(-logits, axis=-1, kind="stable")
    ranks = range(1, target_classes + 1) if targeted else [0]
    if targets is not None:  # the caller's classes in place of the clean ranking
        ranked = np.concatenate([ranked[:, :1], targets], 1)
        ranks = range(1, targets.shape[1] + 1)
    runs = [(rank, restart) for rank in ranks for restart in range(restarts)]
    for number, (rank, restart) in enumerate(runs):
        # each run attacks only the inputs that no earlier run has fooled
        todo = np.flatnonzero(~fooled)
        if targeted:  # a class equal to the true label is no target
            todo = todo[ranked[todo, rank] != y[todo]]
        for start in range(0, len(todo), batch_size):
            index = todo[start:start + batch_size]
            target = ranked[index, rank].astype(np.int32) if targeted else y[index]
            begin = common.per_image(seed, ids[index], (rank, restart), lambda draw: random_start(
                draw, (1, *x.shape[1:]), norm)[0])
            candidate, wrong, loss = _run(model, crafter, x[index], y[index], target, begin,
                                          eps, steps, is_end, interval, norm, loss_name,
                                          batch_size)
            # a run's result replaces the kept one where it fools the model, or where it
            # reached a higher loss
            take = wrong | (loss > best_loss[index])
            best[index[take]] = candidate[take]
            best_loss[index[take]] = loss[take]
            fooled[index] |= wrong
            # after every batch, in thousandths of a run: a long run is not silent
            common.report(progress, common.run_share(number, start + len(index), len(todo)),
                          len(runs) * common.RUN_UNITS, float((~fooled).mean()))
        if not len(todo):
            common.report(progress, (number + 1) * common.RUN_UNITS,
                          len(runs) * common.RUN_UNITS, float((~fooled).mean()))
    return best
