"""The Square Attack, L-inf (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"). Score-based: it reads only the model's logits, never a
gradient, so a defense whose gradients are useless or misleading does not stop it.

The start is a random vertical-stripe pattern of +-eps. Each query redraws one square window of
the perturbation (the same +-eps per channel over the window) at a random place and keeps it where
the margin loss z_y - max_{i != y} z_i falls. The window covers a share p of the image that halves
on a fixed schedule of the query budget (from p_init = 0.8), as in the paper.
"""
import dataclasses
import typing

import numpy as np
from keras import ops

from fmfp_tf.attacks import common, counting
from fmfp_tf.settings import MAX_COUNT, Settings, setting

SEGMENT = 250  # queries between two compactions of the inputs still standing
# the paper's schedule of p, written for a budget of 10,000 queries and rescaled to the budget
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
             (6000, 128), (8000, 256))


@dataclasses.dataclass(frozen=True)
class SquareSettings(Settings):
    """The Square Attack's budget in an evaluation (AutoAttack's: 5,000 queries)."""

    prefix: typing.ClassVar[str] = "square"
    queries: int = setting(5000, "Square's queries per image", minimum=1, maximum=MAX_COUNT)


def window_share(query, queries, p_init=0.8):
    """The share p of the image that the square covers at query `query` (of `queries`)."""
    scaled = int(query / queries * 10000)
    divisor = 512
    for bound, value in _SCHEDULE:
        if scaled <= bound:
            divisor = value
            break
    return p_init / divisor


def _start(model, x, y, eps, stripes):
    """The vertical-stripe start (inputs already misclassified stay as they are) and margins;
    `stripes` are +-1 of shape (batch, 1, width, channels). No gradient anywhere in this module:
    the attack reads only the model's outputs."""
    x_best = ops.clip(x + eps * stripes, 0.0, 1.0)
    best = common.margin(common.logits_of(model, x_best), y)
    clean = common.margin(common.logits_of(model, x), y)
    x_best = ops.where(common.per_example(clean < best), x, x_best)
    return x_best, ops.minimum(best, clean)


def _search(model, x, y, eps, x_best, best, sides, tops, lefts, signs):
    """One segment of the random search: query k redraws a square of side `sides[k]` at
    (`tops[:, k]`, `lefts[:, k]`) with per-channel signs `signs[:, k]`, for every image (one row
    per image, so the draws split over devices with the images)."""
    height, width = ops.shape(x)[1], ops.shape(x)[2]
    rows = ops.arange(height)[None, :]
    cols = ops.arange(width)[None, :]

    def body(i, x_best, best):
        side = ops.take(sides, i)
        top, left = ops.take(tops, i, axis=1)[:, None], ops.take(lefts, i, axis=1)[:, None]
        in_rows = (rows >= top) & (rows < top + side)
        in_cols = (cols >= left) & (cols < left + side)
        window = ops.expand_dims(in_rows[:, :, None] & in_cols[:, None, :], -1)
        delta = ops.where(window, eps * ops.take(signs, i, axis=1), x_best - x)
        candidate = ops.clip(x + delta, 0.0, 1.0)
        value = common.margin(common.logits_of(model, candidate), y)
        # only inputs not yet fooled are updated; fooled ones keep their example
        take = (value < best) & (best >= 0)
        return (i + 1, ops.where(common.per_example(take), candidate, x_best),
                ops.where(take, value, best))

    queries = ops.shape(sides)[0]
    executed, x_best, best = common.while_loop(
        lambda i, _, best: (i < queries) & ops.any(best >= 0), body,
        (ops.convert_to_tensor(0), x_best, best))
    return x_best, best, executed


@common.takes_bounds
def square(model, x, y, eps=8 / 255, queries=5000, p_init=0.8, seed=0, batch_size=256,
           progress=None, ids=None):
    """Untargeted L-inf Square Attack with a budget of `queries` model evaluations per image.

    Args:
        model: a Keras model (called with training=False) or a callable x -> logits; only its
            outputs are read.
        x, y: images in [0, 1] (N, H, W, C) and their true labels.
        eps: L-inf budget, a number or a string like '8/255'.
        queries: model evaluations per image (5,000 in AutoAttack); a batch stops early once
            every image in it is misclassified.
        p_init: the share of the image the first squares cover (0.8 in the paper for L-inf).
        seed: the same seed gives the same examples.
        ids: one integer per image naming it in the evaluation's sample (default 0..N-1): its
            stripes and squares derive from (seed, id), whatever batch it is crafted in.

    Returns float32 adversarial images within eps and in [0, 1].
    """
    eps = common.parse_eps(eps)
    queries = common.check_positive_int("queries", queries)
    p_init = common.check_budget("p_init", p_init, 0.0, 1.0, low_open=True)
    x = common.check_images(x)
    num_classes = common.num_classes_of(model, x)
    y = common.check_labels(y, len(x), num_classes)
    seed, ids = common.seed_of(seed), common.image_ids(ids, len(x))
    height, width = x.shape[1], x.shape[2]
    shorter = min(height, width)
    # the square's side at each query: sqrt(p * pixels), between 1 and side - 1
    sides = np.array([min(max(int(round(np.sqrt(window_share(q, queries, p_init) * height
                                                        * width))), 1), shorter - 1)
                      for q in range(queries)], np.int32)
    if not len(x):
        return x.copy()
    start = common.compiled(_start, model, batch=("x", "y", "stripes"))
    search = common.compiled(_search, model, batch=("x", "y", "x_best", "best", "tops", "lefts",
                                                    "signs"))
    eps_t = common.tensor(eps, "float32")
    out = np.empty_like(x)
    best = np.empty(len(x), np.float32)
    for first in range(0, len(x), batch_size):
        part = slice(first, first + batch_size)
        count, _, width, channels = x[part].shape
        stripes = np.sign(common.per_image(seed, ids[part], (0,), lambda draw: draw.uniform(
            -1.0, 1.0, (1, width, channels))))
        counting.add(model, count, forward=2)  # the stripes and the clean input
        x_best, margins = start(common.tensor(x[part]), common.tensor(y[part]), eps_t,
                                common.tensor(stripes.astype(np.float32)))
        out[part], best[part] = common.numpy(x_best), common.numpy(margins)
    # the search runs in segments of queries; after each, inputs already fooled drop out, so a
    # batch is not held at full size by its last few robust images
    # the start was query 0; the search makes the other queries - 1
    for first in range(1, queries, SEGMENT):
        todo = np.flatnonzero(best >= 0)
        if not len(todo):
            break
        segment = sides[first:first + SEGMENT]
        for begin in range(0, len(todo), batch_size):
            index = todo[begin:begin + batch_size]
            count = len(index)
            # per image and query: where the square goes and its signs
            tops, lefts, signs = common.per_image(seed, ids[index], (1, first), lambda draw: (
                draw.integers(0, height - segment + 1), draw.integers(0, width - segment + 1),
                np.sign(draw.uniform(-1.0, 1.0, (len(segment), 1, 1, x.shape[3])))))
            x_best, margins, executed = search(
                common.tensor(x[index]), common.tensor(y[index]), eps_t,
                common.tensor(out[index]), common.tensor(best[index]), common.tensor(segment),
                common.tensor(tops.astype(np.int32)), common.tensor(lefts.astype(np.int32)),
                common.tensor(signs.astype(np.float32)))
            # the segment stops early once the whole batch is fooled: count what ran
            counting.add(model, count, forward=int(common.numpy(executed)))
            out[index], best[index] = common.numpy(x_best), common.numpy(margins)
        common.report(progress, min(first + SEGMENT, queries), queries, float((best >= 0).mean()))
    return out
