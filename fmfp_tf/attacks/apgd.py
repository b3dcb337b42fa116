"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): PGD whose step size needs no tuning.

Per example, the step size starts at 2 eps and is halved at checkpoints where the loss stalled (the
loss rose in fewer than 75 % of the steps since the last checkpoint, or the step size was not cut
at the last checkpoint and the best loss has not improved since); after a cut the iterate restarts
from the best point so far. Steps use momentum 0.75. Checkpoints come after 22 % of the budget,
then after intervals that shrink by 3 % of the budget down to 6 %, as in the paper.

Losses: cross-entropy (`ce`), the Difference of Logits Ratio (`dlr`, invariant to the logits'
scale, so a model cannot hide behind huge logits), and its targeted form run once per target among
the `target_classes` highest-scoring other classes (APGD-T).
"""
import numpy as np
import tensorflow as tf

from fmfp_tf.attacks import common
from fmfp_tf.attacks.pgd import l2_norm, project
from fmfp_tf.errors import UsageError

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75
STALL_FRACTION = 0.75  # fewer rises than this share of the steps since the last checkpoint


def checkpoint_lengths(steps):
    """Steps between checkpoints: 22 % of the budget, then 3 % less each time, at least 6 %."""
    first = max(int(0.22 * steps), 1)
    shrink, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    lengths, length = [], first
    while sum(lengths) < steps:
        lengths.append(length)
        length = max(length - shrink, shortest)
    return lengths


def _sorted_logits(logits):
    return tf.sort(logits, axis=-1, direction="DESCENDING")


def dlr_loss(logits, y):
    """-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3): positive once the example is misclassified."""
    ordered = _sorted_logits(logits)
    return -common.margin(logits, y) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def targeted_dlr_loss(logits, y, target):
    """-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), maximised to push the target above y."""
    ordered = _sorted_logits(logits)
    true = tf.gather(logits, y, batch_dims=1)
    aimed = tf.gather(logits, target, batch_dims=1)
    return -(true - aimed) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


def _loss(name, logits, y, target):
    if name == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    if name == "dlr":
        return dlr_loss(logits, y)
    return targeted_dlr_loss(logits, y, target)


def _loss_and_gradient(model, x, y, target, loss_name):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.cast(common.logits_of(model, x), tf.float32)
        loss = _loss(loss_name, logits, y, target)
        total = tf.reduce_sum(loss)
    return loss, tape.gradient(total, x), logits


def _per_example(mask, x):
    return tf.reshape(mask, [-1] + [1] * (len(x.shape) - 1))


def _random_start(x, eps, norm, seed):
    """AutoAttack's start: a random point of the ball's surface direction, scaled to radius eps."""
    if norm == "inf":
        t = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
        scale = tf.reduce_max(tf.abs(t), axis=tf.range(1, tf.rank(x)), keepdims=True)
    else:
        t = tf.random.stateless_normal(tf.shape(x), seed)
        scale = l2_norm(t)
    return tf.clip_by_value(x + eps * t / scale, 0.0, 1.0)


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


def apgd_graph(model, x, y, eps, steps, norm, loss_name, seed, target=None, plan=None):
    """One run of APGD from a random start (graph mode). Returns (examples, fooled, best loss).

    The examples are, per input, the first point found misclassified, else the highest-loss point.
    `steps` may be a tensor when `plan` (the tensors of `schedule(steps)`) is given, so one
    traced graph serves every budget.
    """
    if target is None:
        target = y
    if plan is None:
        plan = tuple(tf.constant(a) for a in schedule(steps))
    is_end, interval = plan

    def step_towards(point, grad, step_size):
        if norm == "inf":
            moved = point + step_size * tf.sign(grad)
        else:
            moved = point + step_size * grad / l2_norm(grad)
        return tf.clip_by_value(x + project(moved - x, eps, norm), 0.0, 1.0)

    x_adv = _random_start(x, eps, norm, seed)
    loss, grad, logits = _loss_and_gradient(model, x_adv, y, target, loss_name)
    fooled = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
    batch = tf.shape(y)[0]
    state = dict(
        x_adv=x_adv, x_prev=x_adv, grad=grad, loss=loss,
        step_size=tf.fill([batch], 2.0 * eps),
        x_best=x_adv, grad_best=grad, loss_best=loss,
        x_found=x_adv, fooled=fooled,
        rises=tf.zeros([batch]), loss_best_at_check=loss,
        cut_at_check=tf.ones([batch], tf.bool),
    )

    def body(i, s):
        momentum = tf.where(i > 0, MOMENTUM, 1.0)
        size = _per_example(s["step_size"], x)
        z = step_towards(s["x_adv"], s["grad"], size)
        moved = s["x_adv"] + momentum * (z - s["x_adv"]) + (1.0 - momentum) * (
            s["x_adv"] - s["x_prev"])
        x_new = tf.clip_by_value(x + project(moved - x, eps, norm), 0.0, 1.0)
        loss, grad, logits = _loss_and_gradient(model, x_new, y, target, loss_name)
        wrong = tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), y)
        newly = wrong & ~s["fooled"]
        x_found = tf.where(_per_example(newly, x), x_new, s["x_found"])
        better = loss > s["loss_best"]
        x_best = tf.where(_per_example(better, x), x_new, s["x_best"])
        grad_best = tf.where(_per_example(better, x), grad, s["grad_best"])
        loss_best = tf.where(better, loss, s["loss_best"])
        rises = s["rises"] + tf.cast(loss > s["loss"], tf.float32)
        out = dict(s, x_adv=x_new, x_prev=s["x_adv"], grad=grad, loss=loss, x_best=x_best,
                   grad_best=grad_best, loss_best=loss_best, x_found=x_found,
                   fooled=s["fooled"] | wrong, rises=rises)

        def checkpoint():
            stalled = rises <= STALL_FRACTION * interval[i]
            no_progress = ~s["cut_at_check"] & (loss_best <= s["loss_best_at_check"])
            cut = stalled | no_progress
            cut_x = _per_example(cut, x)
            return dict(out, step_size=tf.where(cut, out["step_size"] / 2.0, out["step_size"]),
                        x_adv=tf.where(cut_x, x_best, x_new),
                        # the restart point has no momentum to carry
                        x_prev=tf.where(cut_x, x_best, out["x_prev"]),
                        grad=tf.where(cut_x, grad_best, grad),
                        rises=tf.zeros_like(rises), loss_best_at_check=loss_best,
                        cut_at_check=cut)

        return i + 1, tf.cond(is_end[i], checkpoint, lambda: out)

    # a trace may know the batch size (or more) statically where the values the loop computes
    # do not (tf.fill of a dynamic size): leave every dimension open, only the ranks are fixed
    invariants = tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), state)
    _, state = tf.while_loop(lambda i, _: i < steps, body, [tf.constant(0), state],
                             shape_invariants=[tf.TensorShape([]), invariants])
    examples = tf.where(_per_example(state["fooled"], x), state["x_found"], state["x_best"])
    return examples, state["fooled"], state["loss_best"]


@tf.function(reduce_retracing=True)
def _compiled(model, x, y, target, eps, steps, is_end, interval, norm, loss_name, seed):
    return apgd_graph(model, x, y, eps, steps, norm, loss_name, seed, target, (is_end, interval))


def apgd(model, x, y, eps=8 / 255, norm="inf", loss="ce", steps=100, restarts=1,
         targeted=False, target_classes=9, seed=0, batch_size=256, progress=None):
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
        seed: the same seed gives the same examples.

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
    norm = {"linf": "inf", "l2": "2"}.get(str(norm).lower(), str(norm).lower())
    if norm not in ("inf", "2"):
        raise UsageError(f"norm must be 'inf' or '2'; got {norm!r}")
    if loss not in LOSSES:
        raise UsageError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    steps = common.check_positive_int("steps", steps)
    restarts = common.check_positive_int("restarts", restarts)
    target_classes = common.check_positive_int("target_classes", target_classes)
    x = common.check_images(x)
    num_classes = common.num_classes_of(model, x)
    y = common.check_labels(y, len(x), num_classes)
    if targeted:
        if num_classes is not None and target_classes > num_classes - 1:
            raise UsageError(f"target_classes = {target_classes} exceeds the {num_classes - 1} "
                             "classes other than the true one")
        if num_classes is not None and num_classes < 4:
            raise UsageError("targeted APGD's DLR loss needs at least 4 classes")
    elif loss == "dlr" and num_classes is not None and num_classes < 3:
        raise UsageError("the DLR loss needs at least 3 classes")
    loss_name = "dlr-targeted" if targeted else loss
    if not len(x):
        return x.copy()
    # the budget and its checkpoints travel as tensors: one traced graph serves every budget
    is_end, interval = (tf.constant(a) for a in schedule(steps))
    logits = common.predict_logits(model, x, batch_size)
    best = x.copy()
    fooled = logits.argmax(-1) != y  # already misclassified inputs are left as they are
    best_loss = np.full(len(x), -np.inf, np.float32)
    # targeted: one run per class ranked 2nd, 3rd, ... by the clean logits
    ranked = np.argsort(-logits, axis=-1, kind="stable")
    ranks = range(1, target_classes + 1) if targeted else [0]
    runs = [(rank, restart) for rank in ranks for restart in range(restarts)]
    for number, (rank, restart) in enumerate(runs):
        # each run attacks only the inputs that no earlier run has fooled
        todo = np.flatnonzero(~fooled)
        for start in range(0, len(todo), batch_size):
            index = todo[start:start + batch_size]
            target = ranked[index, rank].astype(np.int32) if targeted else y[index]
            candidate, wrong, loss = _compiled(
                model, tf.constant(x[index]), tf.constant(y[index]), tf.constant(target),
                tf.constant(eps, tf.float32), tf.constant(steps), is_end, interval, norm,
                loss_name, common.seed_pair(seed, (rank * 1000 + restart) * 100000 + start))
            candidate, wrong, loss = candidate.numpy(), wrong.numpy(), loss.numpy()
            # a run's result replaces the kept one where it fools the model, or where it
            # reached a higher loss
            take = wrong | (loss > best_loss[index])
            best[index[take]] = candidate[take]
            best_loss[index[take]] = loss[take]
            fooled[index] |= wrong
        common.report(progress, number + 1, len(runs), float((~fooled).mean()))
    return best
