"""FAB-T, L-inf (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast
adaptive boundary attack"): the targeted Fast Adaptive Boundary attack as AutoAttack runs it.

FAB looks for the smallest perturbation that moves an input across the decision boundary between
its class y and a target class t. Each step linearises f = z_t - z_y at the current point, so the
boundary becomes a hyperplane, and projects onto it (in L-inf, inside the [0, 1] box) both the
current point and the original input; the next point is a convex mix of the two projections,
extrapolated by `eta`, with the original's weight `alpha` growing with how far the current point
has drifted (at most `alpha_max`). Once a point is adversarial, FAB records it if it is the
closest so far and steps back towards the input by `beta`. An example counts only if its
distance is within eps.

Targets are the classes ranked 2nd .. (target_classes + 1)th by the clean logits, one run each
on the inputs no earlier run has fooled (9 targets, 100 iterations, no random start in
AutoAttack's standard version).
"""
import dataclasses
import typing

import numpy as np
from keras import ops

from fmfp_tf.attacks import common, counting
from fmfp_tf.attacks import precision as precision_lib
from fmfp_tf.errors import UsageError
from fmfp_tf.settings import MAX_COUNT, Settings, setting


@dataclasses.dataclass(frozen=True)
class FABSettings(Settings):
    """FAB-T's effort in an evaluation (AutoAttack's: 100 iterations, 9 targets)."""

    prefix: typing.ClassVar[str] = "fab"
    steps: int = setting(100, "FAB-T iterations per target", minimum=1, maximum=MAX_COUNT)
    target_classes: int = setting(9, "FAB-T: one run per class ranked 2nd.. by the clean logits",
                                  minimum=1, maximum=MAX_COUNT)


def project_linf(point, w, b):
    """The smallest L-inf step d (rows of (batch, dims)) with <w, point + d> = b and point + d
    in [0, 1]; where the box cannot reach the hyperplane, the step to the box's nearest corner.

    Moving coordinate i by s against the side the point is on changes <w, .> by |w_i| s, up to
    the room that coordinate has before the box's edge; at radius r the reachable change is
    g(r) = sum_i |w_i| min(r, room_i), piecewise linear and increasing, so the radius that
    closes the gap is found exactly from the rooms sorted once."""
    gap = ops.sum(w * point, -1) - b
    side = ops.where(gap >= 0, 1.0, -1.0)
    w, gap = w * side[:, None], gap * side  # now gap >= 0 and <w, d> must equal -gap
    room = ops.where(w > 0, point, 1.0 - point)
    weight = ops.abs(w)
    order = ops.argsort(room, axis=-1)
    room_sorted = ops.take_along_axis(room, order, -1)
    weight_sorted = ops.take_along_axis(weight, order, -1)
    reached = ops.cumsum(weight_sorted * room_sorted, -1)  # coordinates at their edge
    free = ops.sum(weight, -1, keepdims=True) - ops.cumsum(weight_sorted, -1)  # the others
    short = ops.sum(ops.cast(reached + room_sorted * free < gap[:, None], "int32"), -1)
    before = ops.maximum(short - 1, 0)[:, None]
    saturated = ops.where(short > 0, ops.take_along_axis(reached, before, -1)[:, 0], 0.0)
    weights_left = ops.where(short > 0, ops.take_along_axis(free, before, -1)[:, 0],
                             ops.sum(weight, -1))
    radius = ops.where(weights_left > 0, (gap - saturated) / ops.maximum(weights_left, 1e-30),
                       0.0)
    dims = ops.shape(point)[-1]
    radius = ops.where(short >= dims, ops.max(room, -1), ops.maximum(radius, 0.0))
    return -ops.sign(w) * ops.minimum(radius[:, None], room)


def _difference_and_gradient(model, x, y, target):
    def difference(x):
        logits = common.logits_of(model, x)
        value = common.pick(logits, target) - common.pick(logits, y)
        return ops.sum(value), value

    _, value, grad = common.value_and_grad(difference, x)
    return value, grad


def fab_graph(model, x, y, target, start, steps, alpha_max, eta, beta):
    """One targeted run of `steps` iterations from `start`. Returns (closest adversarial found,
    its L-inf distance; 1e10 where none was found)."""
    shape = ops.shape(x)
    flat_x = ops.reshape(x, (shape[0], -1))

    def body(i, point, best, closest):
        value, grad = _difference_and_gradient(model, point, y, target)
        w = ops.reshape(grad, (shape[0], -1))
        flat = ops.reshape(point, (shape[0], -1))
        # the linearised boundary f(point) + <grad, z - point> = 0, both points projected at once
        b = ops.sum(w * flat, -1) - value
        steps_both = project_linf(ops.concatenate([flat, flat_x], 0),
                                  ops.concatenate([w, w], 0), ops.concatenate([b, b], 0))
        d_point, d_x = steps_both[:shape[0]], steps_both[shape[0]:]
        a_point = ops.maximum(ops.max(ops.abs(d_point), -1), 1e-8)
        a_x = ops.maximum(ops.max(ops.abs(d_x), -1), 1e-8)
        alpha = ops.clip(a_point / (a_point + a_x), 0.0, alpha_max)[:, None]
        moved = ops.clip((flat + eta * d_point) * (1.0 - alpha) + (flat_x + eta * d_x) * alpha,
                         0.0, 1.0)
        point = ops.reshape(moved, shape)
        adversarial = common.predicted(common.logits_of(model, point)) != y
        distance = common.linf_norm(point - x)
        better = adversarial & (distance < best)
        closest = ops.where(common.per_example(better), point, closest)
        best = ops.where(better, distance, best)
        # from an adversarial point, step back towards the input
        point = ops.where(common.per_example(adversarial), x + beta * (point - x), point)
        return i + 1, point, best, closest

    best = ops.ones_like(x[:, 0, 0, 0]) * 1e10
    _, _, best, closest = common.while_loop(lambda i, *_: i < steps, body,
                                            (ops.convert_to_tensor(0), start, best, x))
    return closest, best


@common.takes_bounds
def fab(model, x, y, eps=8 / 255, steps=100, target_classes=9, restarts=1, alpha_max=0.1,
        eta=1.05, beta=0.9, seed=0, precision="float32", batch_size=256, progress=None,
        ids=None):
    """Targeted L-inf FAB (FAB-T) with AutoAttack's settings as defaults.

    Args:
        model: a Keras model (called with training=False) or a callable x -> logits.
        x, y: images in [0, 1] (N, H, W, C) and their true labels.
        eps: L-inf budget; a minimal example farther than eps does not count.
        steps: iterations per run (100 in AutoAttack).
        target_classes: one run per class ranked 2nd..(target_classes+1)th by the clean logits.
        restarts: runs per target; the first starts at the input, later ones at a random point
            of half the radius of the closest example found so far (at most eps).
        alpha_max, eta, beta: the largest weight of the input in a step, the extrapolation
            beyond the boundary, the step back from an adversarial point (the paper's values).
        seed: the same seed gives the same examples.
        ids: one integer per image naming it in the evaluation's sample (default 0..N-1): its
            random restarts derive from (seed, id), whatever batch it is crafted in.
        precision: "bfloat16" computes the steps on a bfloat16 twin of the model; whether an
            example fools the model is decided in float32 on the model itself.

    Returns float32 images: the closest adversarial example found where it lies within eps,
    else the input.
    """
    eps = common.parse_eps(eps)
    steps = common.check_positive_int("steps", steps)
    target_classes = common.check_positive_int("target_classes", target_classes)
    restarts = common.check_positive_int("restarts", restarts)
    alpha_max = common.check_budget("alpha_max", alpha_max, 0.0, 1.0)
    eta = common.check_budget("eta", eta, 1.0, 10.0)
    beta = common.check_budget("beta", beta, 0.0, 1.0, low_open=True)
    x = common.check_images(x)
    num_classes = common.num_classes_of(model, x)
    y = common.check_labels(y, len(x), num_classes)
    seed, ids = common.seed_of(seed), common.image_ids(ids, len(x))
    if num_classes is not None and target_classes > num_classes - 1:
        raise UsageError(f"target_classes = {target_classes} exceeds the {num_classes - 1} "
                         "classes other than the true one")
    if not len(x):
        return x.copy()
    crafter = precision_lib.crafting_model(model, precision)
    run = common.compiled(fab_graph, crafter, batch=("x", "y", "target", "start"))
    settings = (common.tensor(steps), common.tensor(alpha_max, "float32"),
                common.tensor(eta, "float32"), common.tensor(beta, "float32"))
    logits = common.predict_logits(model, x, batch_size)
    ranked = np.argsort(-logits, axis=-1, kind="stable")
    out = x.copy()
    fooled = logits.argmax(-1) != y  # already misclassified inputs are left as they are
    closest = np.full(len(x), np.inf, np.float32)
    runs = [(rank, restart) for rank in range(1, target_classes + 1) for restart in range(restarts)]
    for number, (rank, restart) in enumerate(runs):
        todo = np.flatnonzero(~fooled)
        for first in range(0, len(todo), batch_size):
            index = todo[first:first + batch_size]
            start = x[index]
            if restart:
                t = common.per_image(seed, ids[index], (rank, restart),
                                     lambda draw: draw.uniform(-1.0, 1.0, x.shape[1:]))
                radius = np.minimum(closest[index], eps).reshape(-1, 1, 1, 1)
                scale = np.abs(t).reshape(len(index), -1).max(-1).reshape(-1, 1, 1, 1)
                start = np.clip(start + 0.5 * radius * t / scale, 0.0, 1.0).astype(np.float32)
            # per step, the gradient of z_t - z_y and a forward check of the new point
            counting.add(crafter, len(index), forward=2 * steps, backward=steps)
            found, distance = (common.numpy(t) for t in run(
                common.tensor(x[index]), common.tensor(y[index]),
                common.tensor(ranked[index, rank].astype(np.int32)), common.tensor(start),
                *settings))
            # an example counts where it is within the budget (and, computed in bfloat16,
            # where it fools the float32 model)
            take = distance <= eps + 1e-7
            if crafter is not model:
                take &= common.predict_logits(model, found, batch_size).argmax(-1) != y[index]
            out[index[take]] = np.clip(found[take], x[index[take]] - eps, x[index[take]] + eps)
            closest[index] = np.minimum(closest[index], distance)
            fooled[index[take]] = True
            # after every batch, in thousandths of a run: a long run is not silent
            common.report(progress, common.run_share(number, first + len(index), len(todo)),
                          len(runs) * common.RUN_UNITS, float((~fooled).mean()))
        if not len(todo):
            common.report(progress, (number + 1) * common.RUN_UNITS,
                          len(runs) * common.RUN_UNITS, float((~fooled).mean()))
    return out
