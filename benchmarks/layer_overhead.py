"""Train-step time with FM / FP over the same model without them, and against Keras's
RandomErasing on the same model. Target: FM / FP <= 1.05 of the bare step.

    python benchmarks/layer_overhead.py
"""
import common  # noqa: F401  (sets up the path)
import keras
import numpy as np
import tensorflow as tf

from fmfp_tf import FeatureMask, FeaturePadding, models


def train_step_fn(front, batch=128):
    keras.utils.set_random_seed(0)
    base = models.build("dnn1", (32, 32, 3), 43)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, base(front(inputs) if front is not None else inputs))
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.constant(np.random.default_rng(0).random((batch, 32, 32, 3)), tf.float32)
    y = tf.constant(np.random.default_rng(1).integers(0, 43, batch), tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda: step().numpy()


def main():
    candidates = {
        "bare": train_step_fn(None),
        "FeatureMask(20)": train_step_fn(FeatureMask(20, seed=0)),
        "FeaturePadding(4)": train_step_fn(FeaturePadding(4, seed=0)),
        "keras RandomErasing": train_step_fn(keras.layers.RandomErasing(
            factor=1.0, scale=(0.39, 0.39), fill_value=0.0, value_range=(0, 1), seed=0)),
    }
    times = common.interleaved(candidates, rounds=9, repeats=5)
    lines = ["| train step (dnn1, batch 128, 32x32x3) | ms | ratio to bare | target |",
             "| --- | ---: | ---: | --- |"]
    for name, seconds in times.items():
        target = "<= 1.05" if name.startswith("Feature") else ""
        lines.append(f"| {name} | {1000 * seconds:.1f} | {seconds / times['bare']:.3f} | "
                     f"{target} |")
    common.record("Layer overhead", lines, "python benchmarks/layer_overhead.py")


if __name__ == "__main__":
    main()
