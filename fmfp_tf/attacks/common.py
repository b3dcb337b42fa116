"""What every attack shares: input checks, budgets, model calls, loss gradients and batching."""
import fractions

import keras
import numpy as np
import tensorflow as tf

from fmfp_tf.errors import UsageError


def parse_eps(value):
    """An L-inf/L2 budget from a number or a string like '8/255' or '0.031'."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(fractions.Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"eps {value!r} is not a number or a fraction like 8/255") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise UsageError(f"eps must be a number or a string like '8/255'; got {value!r}")
    if not np.isfinite(number) or not 0.0 <= number <= 1.0:
        raise UsageError(
            f"eps {value!r} = {number:g} is outside [0, 1]; images are in [0, 1], so a budget "
            "above 1 is meaningless"
        )
    return number


def check_budget(name, value, low=0.0, high=1.0, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise UsageError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value > high or value < low or (low_open and value == low):
        raise UsageError(f"{name} = {value!r} is outside {'(' if low_open else '['}{low}, {high}]")
    return value


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_images(x, clip_min=0.0, clip_max=1.0):
    """Float32 NHWC array of images in [clip_min, clip_max]; a clear error for NaN/inf or range."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise UsageError(f"attack inputs must be a batch of images (rank 4); got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise UsageError("attack inputs contain NaN or inf values")
    if x.size and (x.min() < clip_min - 1e-6 or x.max() > clip_max + 1e-6):
        raise UsageError(
            f"attack inputs must lie in [{clip_min}, {clip_max}]; got values in "
            f"[{x.min():.4g}, {x.max():.4g}] (scale images to [0, 1] first)"
        )
    return x


def check_labels(y, count, num_classes=None):
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != count:
        raise UsageError(f"labels must be a vector of {count} class ids; got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"labels must be integer class ids; got dtype {y.dtype}")
    if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise UsageError(f"labels must lie in 0..{num_classes - 1}; got {y.min()}..{y.max()}")
    return y.astype(np.int32)


def logits_of(model, x):
    """The model's output for x at inference (FM/FP inactive unless built with test_time), in
    float32 whatever precision the model computes in (a mixed-precision model training with
    adversarial examples gives bfloat16 logits; losses and margins need float32)."""
    if isinstance(model, keras.Model) or isinstance(model, keras.layers.Layer):
        return tf.cast(model(x, training=False), tf.float32)
    return tf.cast(model(x), tf.float32)


def loss_gradient(model, x, y):
    """Gradient of the summed cross-entropy w.r.t. x, and the logits at x."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = logits_of(model, x)
        loss = tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        )
    return tape.gradient(loss, x), logits


def num_classes_of(model, x_sample):
    """The model's number of outputs, from one image; None when there is no image to ask with."""
    if not len(x_sample):
        return None
    return int(logits_of(model, tf.convert_to_tensor(x_sample[:1])).shape[-1])


def predict_logits(model, x, batch_size=256):
    """float32 logits of the images `x` (non-empty), `batch_size` at a time."""
    return np.concatenate([np.asarray(logits_of(model, x[i:i + batch_size]), np.float32)
                           for i in range(0, len(x), batch_size)])


def margin(logits, y):
    """z_y - max_{i != y} z_i per example: negative once the example is misclassified."""
    true = tf.gather(logits, y, batch_dims=1)
    others = tf.where(tf.equal(tf.range(tf.shape(logits)[-1])[tf.newaxis], y[:, tf.newaxis]),
                      -np.inf, logits)
    return true - tf.reduce_max(others, -1)


def batched(fn, x, y, batch_size, progress=None):
    """Applies fn(x_batch, y_batch) -> adversarial batch over the whole arrays."""
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        stop = min(start + batch_size, len(x))
        out[start:stop] = np.asarray(fn(tf.constant(x[start:stop]), tf.constant(y[start:stop])))
        if progress is not None:
            progress(stop, len(x))
    return out


def report(progress, done, total, robust=None):
    """Calls an attack's progress callback with (done, total), and with `robust` (the share of
    the images not yet fooled) as a third argument when the callback takes one, so callbacks of
    two arguments keep working. Attacks are silent unless given a callback."""
    if progress is None:
        return
    if robust is not None:
        import inspect

        try:
            inspect.signature(progress).bind(done, total, robust)
        except (TypeError, ValueError):
            pass
        else:
            progress(done, total, robust)
            return
    progress(done, total)


def seed_pair(seed, offset=0):
    """A stateless (2,) seed from an int (or None, drawn from numpy's global state)."""
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    return tf.constant([int(seed), int(offset)], dtype=tf.int64)
