"""Train-step time with FM / FP over the same model without them, and against Keras's
RandomErasing and a one-multiply `Rescaling(1.0)` (the cost of any op in front of the first
convolution) on the same model, on the current Keras backend. Target: FM / FP <= 1.02 of the bare
step.

    python benchmarks/layer_overhead.py                       # TensorFlow
    KERAS_BACKEND=jax python benchmarks/layer_overhead.py     # JAX (TensorFlow not needed)

Each backend's step is compiled the way its Keras trainer compiles it: a `tf.function` around
`GradientTape` on TensorFlow, `jax.jit` of `stateless_call` + `value_and_grad` on JAX.
"""
import statistics

import common  # noqa: F401  (sets up the path)
import keras
import numpy as np

from fmfp_tf import FeatureMask, FeaturePadding, models

BATCH = 128


def _model(front):
    keras.utils.set_random_seed(0)
    base = models.build("dnn1", (32, 32, 3), 43)
    inputs = keras.Input((32, 32, 3))
    return keras.Model(inputs, base(front(inputs) if front is not None else inputs))


def _data():
    x = np.random.default_rng(0).random((BATCH, 32, 32, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 43, BATCH).astype("int32")
    return x, y


def tensorflow_step(front):
    import tensorflow as tf

    model = _model(front)
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = (tf.constant(v) for v in _data())

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    # the batch is an argument, not a captured constant the compiler could fold into the bare step
    return lambda: step(x, y).numpy()


def jax_step(front):
    import jax

    model = _model(front)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = (jax.numpy.asarray(v) for v in _data())

    def loss(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, logits), non_trainable

    @jax.jit
    def step(state, x, y):
        trainable, non_trainable, opt = state
        (value, non_trainable), grads = jax.value_and_grad(loss, has_aux=True)(
            trainable, non_trainable, x, y)
        trainable, opt = optimizer.stateless_apply(opt, grads, trainable)
        return value, (trainable, non_trainable, opt)

    # the seed generators' states are non-trainable variables: they advance every step
    state = [[v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables]]

    def run():
        value, new_state = step(state, x, y)
        state[:] = new_state
        value.block_until_ready()

    return run


def main():
    backend = keras.backend.backend()
    step = {"tensorflow": tensorflow_step, "jax": jax_step}[backend]
    candidates = {
        "bare": step(None),
        "FeatureMask(20)": step(FeatureMask(20, seed=0)),
        "FeaturePadding(4)": step(FeaturePadding(4, seed=0)),
        # a deterministic one-multiply layer: what any op in front of the first convolution costs
        "keras Rescaling(1.0)": step(keras.layers.Rescaling(1.0)),
        "keras RandomErasing": step(keras.layers.RandomErasing(
            factor=1.0, scale=(0.39, 0.39), fill_value=0.0, value_range=(0, 1), seed=0)),
    }
    samples = common.interleaved_samples(candidates, rounds=21, repeats=5)
    ratios = common.round_ratios(samples, "bare")
    lines = [f"| train step (dnn1, batch {BATCH}, 32x32x3), {backend} | ms | ratio to bare "
             "(median of 21 rounds) | quartiles | target |", "| --- | ---: | ---: | --- | --- |"]
    for name, values in samples.items():
        target = "<= 1.02" if name.startswith("Feature") else ""
        median, low, high = ratios[name]
        lines.append(f"| {name} | {1000 * statistics.median(values):.1f} | {median:.3f} | "
                     f"{low:.3f}-{high:.3f} | {target} |")
    command = "python benchmarks/layer_overhead.py"
    if backend != "tensorflow":
        command = f"KERAS_BACKEND={backend} {command}"
    common.record(f"Layer overhead ({backend})", lines, command)


if __name__ == "__main__":
    main()
