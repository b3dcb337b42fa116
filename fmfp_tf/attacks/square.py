"""The Square Attack, L-inf (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"). Score-based: it reads only the model's logits, never a
gradient, so a defense whose gradients are useless or misleading does not stop it.

The start is a random vertical-stripe pattern of +-eps. Each query redraws one square window of
the perturbation (the same +-eps per channel over the window) at a random place and keeps it where
the margin loss z_y - max_{i != y} z_i falls. The window covers a share p of the image that halves
on a fixed schedule of the query budget (from p_init = 0.8), as in the paper.
"""
import numpy as np
import tensorflow as tf

from fmfp_tf.attacks import common

SEGMENT = 250  # queries between two compactions of the inputs still standing
# the paper's schedule of p, written for a budget of 10,000 queries and rescaled to the budget
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
             (6000, 128), (8000, 256))


def window_share(query, queries, p_init=0.8):
    """The share p of the image that the square covers at query `query` (of `queries`)."""
    scaled = int(query / queries * 10000)
    divisor = 512
    for bound, value in _SCHEDULE:
        if scaled <= bound:
            divisor = value
            break
    return p_init / divisor


def _logits(model, x):
    # no tape anywhere in this module: the attack never asks the model for a gradient
    return tf.cast(common.logits_of(model, x), tf.float32)


@tf.function(reduce_retracing=True)
def _start(model, x, y, eps, seed):
    """The vertical-stripe start (inputs already misclassified stay as they are) and margins."""
    shape = tf.shape(x)
    stripes = tf.sign(tf.random.stateless_uniform([shape[0], 1, shape[2], shape[3]], seed,
                                                  -1.0, 1.0))
    x_best = tf.clip_by_value(x + eps * stripes, 0.0, 1.0)
    best = common.margin(_logits(model, x_best), y)
    clean = common.margin(_logits(model, x), y)
    x_best = tf.where(tf.reshape(clean < best, [-1, 1, 1, 1]), x, x_best)
    return x_best, tf.minimum(best, clean)


@tf.function(reduce_retracing=True)
def _search(model, x, y, eps, x_best, best, sides, first, seed):
    """Queries `first` .. `first + len(sides) - 1` of the random search."""
    shape = tf.shape(x)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    queries = tf.shape(sides)[0]

    def body(i, x_best, best):
        side = sides[i]
        step_seed = tf.random.experimental.stateless_fold_in(seed, first + i + 1)
        seeds = tf.random.experimental.stateless_split(step_seed, 3)
        top = tf.random.stateless_uniform([batch], seeds[0], 0, height - side + 1, tf.int32)
        left = tf.random.stateless_uniform([batch], seeds[1], 0, width - side + 1, tf.int32)
        signs = tf.sign(tf.random.stateless_uniform([batch, 1, 1, channels], seeds[2], -1.0, 1.0))
        rows, cols = tf.range(height)[tf.newaxis], tf.range(width)[tf.newaxis]
        in_rows = (rows >= top[:, tf.newaxis]) & (rows < top[:, tf.newaxis] + side)
        in_cols = (cols >= left[:, tf.newaxis]) & (cols < left[:, tf.newaxis] + side)
        window = (in_rows[:, :, tf.newaxis] & in_cols[:, tf.newaxis, :])[..., tf.newaxis]
        delta = tf.where(window, eps * signs, x_best - x)
        candidate = tf.clip_by_value(x + delta, 0.0, 1.0)
        value = common.margin(_logits(model, candidate), y)
        # only inputs not yet fooled are updated; fooled ones keep their example
        take = (value < best) & (best >= 0)
        x_best = tf.where(tf.reshape(take, [-1, 1, 1, 1]), candidate, x_best)
        return i + 1, x_best, tf.where(take, value, best)

    # dimensions are left open: a trace may know them, the window draws (from tf.shape) do not
    _, x_best, best = tf.while_loop(
        lambda i, _, best: (i < queries) & tf.reduce_any(best >= 0), body,
        [tf.constant(0), x_best, best],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None] * 4),
                          tf.TensorShape([None])])
    return x_best, best


def square(model, x, y, eps=8 / 255, queries=5000, p_init=0.8, seed=0, batch_size=256,
           progress=None):
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

    Returns float32 adversarial images within eps and in [0, 1].
    """
    eps = common.parse_eps(eps)
    queries = common.check_positive_int("queries", queries)
    p_init = common.check_budget("p_init", p_init, 0.0, 1.0, low_open=True)
    x = common.check_images(x)
    num_classes = common.num_classes_of(model, x)
    y = common.check_labels(y, len(x), num_classes)
    height, width = x.shape[1], x.shape[2]
    shorter = min(height, width)
    # the square's side at each query: sqrt(p * pixels), between 1 and side - 1
    sides = np.array([min(max(int(round(np.sqrt(window_share(q, queries, p_init) * height
                                                        * width))), 1), shorter - 1)
                      for q in range(queries)], np.int32)
    if not len(x):
        return x.copy()
    out = np.empty_like(x)
    best = np.empty(len(x), np.float32)
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        x_best, margins = _start(model, tf.constant(x[part]), tf.constant(y[part]),
                                 tf.constant(eps, tf.float32), common.seed_pair(seed, start))
        out[part], best[part] = x_best.numpy(), margins.numpy()
    # the search runs in segments of queries; after each, inputs already fooled drop out, so a
    # batch is not held at full size by its last few robust images
    # the start was query 0; the search makes the other queries - 1
    for first in range(1, queries, SEGMENT):
        todo = np.flatnonzero(best >= 0)
        if not len(todo):
            break
        segment = tf.constant(sides[first:first + SEGMENT])
        for start in range(0, len(todo), batch_size):
            index = todo[start:start + batch_size]
            x_best, margins = _search(
                model, tf.constant(x[index]), tf.constant(y[index]), tf.constant(eps, tf.float32),
                tf.constant(out[index]), tf.constant(best[index]), segment, tf.constant(first),
                common.seed_pair(seed, 1 + int(index[0])))
            out[index], best[index] = x_best.numpy(), margins.numpy()
        common.report(progress, min(first + SEGMENT, queries), queries, float((best >= 0).mean()))
    return out
