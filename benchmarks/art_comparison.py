"""Our `pgd-at` against IBM ART's `AdversarialTrainerMadryPGD` on the same model and data.

Both train dnn1 with PGD-7 examples (L-inf eps 8/255, step 2.5 * eps / 7, one random start,
batch 32) for one epoch over the same images; the ratio is our epoch time over ART's. Target
<= 0.3. ART is a benchmark-only dependency: `pip install adversarial-robustness-toolbox`.

    python benchmarks/art_comparison.py [--images 1024]
"""
import argparse
import tempfile
import time

import common
import keras
import numpy as np
import tensorflow as tf

from fmfp_tf import data, models
from fmfp_tf.config import TrainConfig
from fmfp_tf.training.adversarial import perturbation
from fmfp_tf.training.loop import fit

EPS, STEPS, BATCH = 8 / 255, 7, 32


def load(count):
    root = common.shared_data("gtsrb")
    if root:
        arrays = data.load_arrays("gtsrb", root, "train", limit=count)
        return arrays, "GTSRB"
    return data.load_arrays("synthetic", split="train", limit=count), "synthetic"


def ours(arrays, epochs=2):
    """Seconds of our second PGD-AT epoch (the first includes graph tracing)."""
    keras.utils.set_random_seed(0)
    model = models.build("dnn1", arrays.images.shape[1:], 43)
    optimizer = keras.optimizers.Adam(1e-3)
    attack = perturbation(
        TrainConfig(defense="pgd-at", at_eps=EPS, at_steps=STEPS, seed=0), model)
    with tempfile.TemporaryDirectory() as tmp:
        history = fit(model, optimizer, tf.distribute.get_strategy(), arrays, None,
                      epochs=epochs, batch_size=BATCH, seed=0, checkpoint_dir=tmp,
                      perturbation=attack, verbose=0)
    return history[-1]["seconds"]


def art_epoch(arrays):
    """Seconds of one ART AdversarialTrainerMadryPGD epoch (after a one-batch warm-up)."""
    from art.defences.trainer import AdversarialTrainerMadryPGD
    from art.estimators.classification import TensorFlowV2Classifier

    keras.utils.set_random_seed(0)
    model = models.build("dnn1", arrays.images.shape[1:], 43)
    optimizer = keras.optimizers.Adam(1e-3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(model, images, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model(images, training=True))
        gradients = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    classifier = TensorFlowV2Classifier(
        model, nb_classes=43, input_shape=arrays.images.shape[1:], loss_object=loss,
        train_step=train_step, clip_values=(0.0, 1.0))
    x = arrays.images.astype(np.float32) / 255.0
    y = keras.utils.to_categorical(arrays.labels, 43)
    trainer = AdversarialTrainerMadryPGD(classifier, nb_epochs=1, batch_size=BATCH, eps=EPS,
                                         eps_step=2.5 * EPS / STEPS, max_iter=STEPS,
                                         num_random_init=1)
    trainer.fit(x[:BATCH], y[:BATCH])  # warm-up: traces the train step
    start = time.perf_counter()
    trainer.fit(x, y)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1024)
    args = parser.parse_args()
    arrays, source = load(args.images)
    import art

    ours_seconds = ours(arrays)
    art_seconds = art_epoch(arrays)
    ratio = ours_seconds / art_seconds
    n = len(arrays.labels)
    lines = [f"| PGD-7 adversarial training, dnn1, {n} {source} images, batch {BATCH} | "
             "seconds per epoch | images/s |", "| --- | ---: | ---: |",
             f"| fmfp-tf `pgd-at` | {ours_seconds:.1f} | {n / ours_seconds:.0f} |",
             f"| ART {art.__version__} `AdversarialTrainerMadryPGD` | {art_seconds:.1f} | "
             f"{n / art_seconds:.0f} |", "",
             f"Ratio ours / ART: **{ratio:.3f}** (target <= 0.3)."]
    common.record("Baseline cost against IBM ART", lines,
                  f"python benchmarks/art_comparison.py --images {args.images}")


if __name__ == "__main__":
    main()
