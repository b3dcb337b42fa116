"""What every attack shares: input checks, budgets, model calls, losses, gradients, batching.

Written once with `keras.ops`; what `keras.ops` lacks (a gradient with respect to the input,
compiling a function, a loop that compiles) comes from `fmfp_tf.backend` for the Keras backend in
use (TensorFlow: `GradientTape`, `tf.function`; JAX: `jax.value_and_grad`, `jit`; PyTorch:
`torch.autograd`, eager). Randomness is drawn with NumPy outside the compiled parts, so one seed
gives the same random starts on every backend, and it is drawn per image (`per_image`), from the
seed and the image's id, so an image's result does not depend on the batch, shard or device it is
crafted in.
"""
import functools
import inspect
import weakref

import keras
import numpy as np
from keras import ops

from fmfp_tf import backend
from fmfp_tf.attacks import counting, devices
from fmfp_tf.budgets import parse_eps  # noqa: F401  (the attacks' API: common.parse_eps)
from fmfp_tf.errors import UsageError


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


def check_norm(norm):
    norm = {"linf": "inf", "l2": "2", "np.inf": "inf"}.get(str(norm).lower(), str(norm).lower())
    if norm not in ("inf", "2"):
        raise UsageError(f"norm must be 'inf' or '2'; got {norm!r}")
    return norm


def check_images(x, clip_min=0.0, clip_max=1.0):
    """Float32 NHWC array of images in [clip_min, clip_max]; a clear error for NaN/inf or range."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise UsageError(f"attack inputs must be a batch of images (rank 4); got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise UsageError("attack inputs contain NaN or inf values")
    slack = 1e-6 * max(1.0, clip_max - clip_min)
    if x.size and (x.min() < clip_min - slack or x.max() > clip_max + slack):
        raise UsageError(
            f"attack inputs must lie in [{clip_min:g}, {clip_max:g}]; got values in "
            f"[{x.min():.4g}, {x.max():.4g}] (a model taking another range: pass "
            "bounds=(low, high))"
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


# -- the model's input range: attacks run in [0, 1], the budget a share of the range ----------

class UnitRange(keras.layers.Layer):
    """`model` seen on inputs in [0, 1]: u -> model(low + (high - low) * u). Every attack runs
    in [0, 1] on it, so one rule holds everywhere: eps is a share of the input range (8/255 is
    8 levels of a model taking 0-255), as the reports state it."""

    def __init__(self, model, low, high, **kwargs):
        super().__init__(**kwargs)
        self.model, self.low, self.high = model, float(low), float(high)
        self.passes_per_call = int(getattr(model, "passes_per_call", 1))

    @property
    def layers(self):  # what inspects a model's layers (its defenses) sees the model's
        return [self.model] if isinstance(self.model, keras.layers.Layer) else []

    @property
    def input_shape(self):
        return getattr(self.model, "input_shape", None)

    def call(self, x, training=False):
        x = self.low + (self.high - self.low) * x
        if isinstance(self.model, keras.layers.Layer):
            return self.model(x, training=training)
        return self.model(x)


_RANGED = weakref.WeakKeyDictionary()


def check_bounds(bounds):
    """(low, high) of a model's input range: two finite numbers, low < high."""
    try:
        low, high = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise UsageError(f"bounds must be two numbers (low, high), the model's input range; "
                         f"got {bounds!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise UsageError(f"bounds must be finite with low < high; got ({low:g}, {high:g})")
    return low, high


def in_unit_range(model, bounds):
    """`model`, whose inputs lie in `bounds`, seen on [0, 1]: itself for (0, 1), else its
    `UnitRange`, one per model and range (so its compiled attacks are reused)."""
    low, high = check_bounds(bounds)
    if (low, high) == (0.0, 1.0):
        return model
    try:
        ranged = _RANGED.setdefault(model, {})
    except TypeError:  # not weakly referable: wrapped anew (compiled anew) on each call
        ranged = {}
    if (low, high) not in ranged:
        ranged[(low, high)] = UnitRange(model, low, high)
    return ranged[(low, high)]


def unit_range(model, x, bounds):
    """(model on [0, 1], x in [0, 1], restore) for an attack on `model` whose inputs lie in
    `bounds`; `restore(x_unit)` maps examples back to the model's range. (0, 1) changes
    nothing; x outside the bounds is refused as any attack input is."""
    low, high = check_bounds(bounds)
    if (low, high) == (0.0, 1.0):
        return model, x, lambda out: out
    x = check_images(x, low, high)
    unit = np.clip((x - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return (in_unit_range(model, (low, high)), unit,
            lambda out: (low + (high - low) * out).astype(np.float32))


def takes_bounds(attack):
    """`attack(model, x, y, ...)` given a keyword `bounds=(low, high)`, the model's input range
    (Foolbox's `bounds`, ART's `clip_values`): it runs in [0, 1] on `UnitRange(model)` and its
    examples come back in the model's range; eps stays a share of the range."""
    @functools.wraps(attack)
    def with_bounds(model, x, y, *args, bounds=(0.0, 1.0), **kwargs):
        model, x, restore = unit_range(model, x, bounds)
        return restore(attack(model, x, y, *args, **kwargs))

    signature = inspect.signature(attack)
    with_bounds.__signature__ = signature.replace(parameters=[
        *signature.parameters.values(),
        inspect.Parameter("bounds", inspect.Parameter.KEYWORD_ONLY, default=(0.0, 1.0))])
    return with_bounds


# -- tensors: the model, its losses, the geometry of budgets (keras.ops, every backend) ---------

def logits_of(model, x):
    """The model's output for x at inference (FM/FP inactive unless built with test_time), in
    float32 whatever precision the model computes in (a mixed-precision model gives bfloat16
    logits; losses and margins need float32)."""
    if isinstance(model, keras.layers.Layer):
        return ops.cast(model(x, training=False), "float32")
    return ops.cast(model(x), "float32")


def value_and_grad(fn, x):
    """(value, aux, d value / d x) of fn(x) -> (scalar value, aux), on the current backend."""
    return backend.current().value_and_grad(fn, x)


def while_loop(cond, body, loop_vars):
    """A loop that stays inside the compiled program on TensorFlow and JAX."""
    return backend.current().while_loop(cond, body, loop_vars)


def cross_entropy(logits, y):
    return ops.sparse_categorical_crossentropy(y, logits, from_logits=True)


def loss_gradient(model, x, y):
    """Gradient of the summed cross-entropy w.r.t. x, and the logits at x."""
    def loss(x):
        logits = logits_of(model, x)
        return ops.sum(cross_entropy(logits, y)), logits

    _, logits, grad = value_and_grad(loss, x)
    return grad, logits


def pick(values, index):
    """values[i, index[i]] per row."""
    return ops.take_along_axis(values, ops.expand_dims(ops.cast(index, "int32"), -1), 1)[:, 0]


def margin(logits, y):
    """z_y - max_{i != y} z_i per example: negative once the example is misclassified."""
    others = ops.where(ops.one_hot(y, ops.shape(logits)[-1]) > 0, -np.inf, logits)
    return pick(logits, y) - ops.max(others, -1)


def predicted(logits):
    return ops.cast(ops.argmax(logits, -1), "int32")


def per_example(mask):
    """A (batch,) tensor shaped to broadcast against NHWC images."""
    return ops.reshape(mask, (-1, 1, 1, 1))


def l2_norm(v):
    return ops.sqrt(ops.sum(ops.square(v), axis=(1, 2, 3), keepdims=True) + 1e-12)


def linf_norm(v):
    return ops.max(ops.abs(v), axis=(1, 2, 3))


def project(delta, eps, norm):
    if norm == "inf":
        return ops.clip(delta, -eps, eps)
    return delta * ops.minimum(1.0, eps / l2_norm(delta))


def steepest(grad, norm):
    """The unit step of steepest ascent in `norm`."""
    return ops.sign(grad) if norm == "inf" else grad / l2_norm(grad)


# -- compiling and batching ----------------------------------------------------------------------

_COMPILED = weakref.WeakKeyDictionary()


def compiled(fn, model, batch=()):
    """`fn(model, *tensors, **python_values)` compiled for `model` on the current backend, once
    per model, called as `run(*tensors, **python_values)` (the model's variables are read where
    they live on TensorFlow and passed in on JAX). The compiled function holds the model weakly,
    so a model dropped by its caller is freed with its compiled attacks.

    `batch` names the parameters that hold one row per image (axis 0): inside
    `devices.data_parallel(...)` those are split over the devices and the rest is replicated,
    so one call runs data-parallel (outputs of rank 0 are the largest over the devices)."""
    try:
        cache = _COMPILED.setdefault(model, {})
        reference = weakref.ref(model)
    except TypeError:  # a callable that cannot be weakly referenced: compile every time
        cache, reference = {}, (lambda: model)
    key = (fn, keras.backend.backend())
    if key not in cache:
        def bound(*args, **kwargs):
            return fn(reference(), *args, **kwargs)

        names = list(inspect.signature(fn).parameters)[1:]  # after the model
        unknown = set(batch) - set(names)
        if unknown:
            raise TypeError(f"{fn.__name__} has no parameter(s) {sorted(unknown)}")
        positions = tuple(index for index, name in enumerate(names) if name in batch)
        cache[key] = devices.parallel(backend.current().compile(bound, model), positions,
                                      reference)
    return cache[key]


def padded_rows(rows, most):
    """The rows a compiled call runs for `rows` images: as many where a compiled program takes
    any batch size; on JAX, which compiles once per shape, the next multiple of 32 (at most
    `most`, a size it runs anyway), so that shrinking batches cost a few programs."""
    if keras.backend.backend() != "jax":
        return rows
    return max(rows, min(-(-rows // 32) * 32, most))


def tensor(x, dtype=None):
    return ops.convert_to_tensor(x, dtype=dtype)


def numpy(x):
    return ops.convert_to_numpy(x)


def num_classes_of(model, x_sample):
    """The model's number of outputs, from one image; None when there is no image to ask with."""
    if not len(x_sample):
        return None
    counting.add(model, 1, forward=1)
    return int(numpy(logits_of(model, tensor(x_sample[:1]))).shape[-1])


def predict_logits(model, x, batch_size=256):
    """float32 logits of the images `x` (non-empty), `batch_size` at a time, compiled."""
    run = compiled(logits_of, model, batch=("x",))
    counting.add(model, len(x), forward=1)
    return np.concatenate([np.asarray(numpy(run(tensor(x[i:i + batch_size]))),
                                      np.float32)
                           for i in range(0, len(x), batch_size)])


def batched(fn, x, y, batch_size, progress=None, ids=None):
    """Applies fn(x_batch, y_batch, ids_batch) -> adversarial batch over the whole arrays
    (`ids`: the images' ids, `image_ids`)."""
    ids = image_ids(ids, len(x))
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        stop = min(start + batch_size, len(x))
        out[start:stop] = numpy(fn(x[start:stop], y[start:stop], ids[start:stop]))
        if progress is not None:
            progress(stop, len(x))
    return out


RUN_UNITS = 1000  # an attack made of runs reports its progress in thousandths of a run


def run_share(number, done, total):
    """Progress after `done` of the `total` images of run `number` (counted from 0), in
    RUN_UNITS per run."""
    return number * RUN_UNITS + (RUN_UNITS * done // total if total else RUN_UNITS)


def report(progress, done, total, robust=None):
    """Calls an attack's progress callback with (done, total), and with `robust` (the share of
    the images not yet fooled) as a third argument when the callback takes one, so callbacks of
    two arguments keep working. Attacks are silent unless given a callback."""
    if progress is None:
        return
    if robust is not None:
        try:
            inspect.signature(progress).bind(done, total, robust)
        except (TypeError, ValueError):
            pass
        else:
            progress(done, total, robust)
            return
    progress(done, total)


def seed_of(seed):
    """An attack's seed: the int given, or one drawn at random for None, fixed for the call (so
    every image of a seedless call draws from one seed)."""
    if seed is None:
        return int(np.random.randint(0, 2**31 - 1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer or None; got {seed!r}")
    return int(seed)


def image_ids(ids, count):
    """The images' ids: one non-negative integer per image naming it in the evaluation's seeded
    sample (default 0..count-1). An image's random draws derive from its id, not its place in
    the batch."""
    if ids is None:
        return np.arange(count, dtype=np.int64)
    ids = np.asarray(ids)
    if ids.shape != (count,) or (count and not np.issubdtype(ids.dtype, np.integer)):
        raise UsageError(f"ids must be {count} integers, one per image; got {ids.dtype} "
                         f"{ids.shape}")
    if count and ids.min() < 0:
        raise UsageError(f"ids must be non-negative; got {ids.min()}")
    return ids.astype(np.int64)


def per_image(seed, ids, stream, draw):
    """`draw(generator)` for each image, stacked: the image's generator is seeded by (seed,
    *stream, its id), so its draws are the same whatever batch, batch size, shard or device it
    is crafted in (the evaluation's answer does not depend on how the work is split)."""
    drawn = [draw(np.random.default_rng([int(seed), *map(int, stream), int(i)])) for i in ids]
    if drawn and isinstance(drawn[0], tuple):  # several arrays per image: each stacked
        return tuple(np.stack(parts) for parts in zip(*drawn))
    return np.stack(drawn)
