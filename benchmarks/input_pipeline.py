"""Input pipeline against the train step: images/s of the `tf.data` pipeline that feeds training
(real GTSRB, FeatureMask applied in the pipeline) over images/s of dnn1's train step. Target >= 5,
so training is never input-bound. Also reported: decoding the original image files (the one-time
cost before the decoded-array cache serves every later run).

    python benchmarks/input_pipeline.py
"""
import tempfile
import time

import common
import keras
import tensorflow as tf

from fmfp_tf import FeatureMask, data, models
from fmfp_tf.data.images import Arrays
from fmfp_tf.data.pipeline import make_dataset
from fmfp_tf.training.loop import fit

BATCH = 32


def main():
    root = common.shared_data("gtsrb")
    name = "gtsrb" if root else "synthetic"
    start = time.perf_counter()
    decoded = data.load_arrays(name, root, "test", use_cache=False)
    decode_rate = len(decoded.labels) / (time.perf_counter() - start)
    train = data.load_arrays(name, root, "train")
    mask = FeatureMask(0.2, seed=0)

    def pipeline():
        dataset = make_dataset(train.images, train.labels, BATCH, shuffle=True, seed=0)
        return dataset.map(lambda x, y: (mask(x, training=True), y),
                           num_parallel_calls=tf.data.AUTOTUNE)

    count = 0
    start = time.perf_counter()
    for x, _ in pipeline():
        count += int(x.shape[0])
    pipeline_rate = count / (time.perf_counter() - start)

    keras.utils.set_random_seed(0)
    model = models.build("dnn1", train.images.shape[1:], 43)
    sample = Arrays(train.images[:4096], train.labels[:4096], train.class_names)
    with tempfile.TemporaryDirectory() as tmp:
        history = fit(model, keras.optimizers.Adam(1e-3), tf.distribute.get_strategy(),
                      sample, None, epochs=2, batch_size=BATCH, seed=0, checkpoint_dir=tmp,
                      verbose=0)
    step_rate = len(sample.labels) / history[-1]["seconds"]
    lines = [f"| {name}, batch {BATCH} | images/s |", "| --- | ---: |",
             f"| tf.data pipeline, {len(train.labels)} images, FeatureMask(0.2) in the map | "
             f"{pipeline_rate:.0f} |",
             f"| dnn1 train step (epoch 2 of 2, {len(sample.labels)} images) | {step_rate:.0f} |",
             f"| decoding the original files once ({len(decoded.labels)} test images, no cache) | "
             f"{decode_rate:.0f} |", "",
             f"Pipeline / train step: **{pipeline_rate / step_rate:.1f}** (target >= 5)."]
    common.record("Input pipeline", lines, "python benchmarks/input_pipeline.py")


if __name__ == "__main__":
    main()
