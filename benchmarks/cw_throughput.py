"""C&W-L2 throughput: `fmfp_tf.attacks.cw_l2` (one compiled graph) over CleverHans 4.0.0's
`carlini_wagner_l2` (a Python loop of eager steps; run through `cleverhans_compat`), same model,
images and settings, with the success rate of each. Target >= 1.0 at equal success.

The model is a dnn1 trained briefly on GTSRB (synthetic when ../shared is absent); only images it
classifies correctly are attacked, so both attacks move away from the same label.

    python benchmarks/cw_throughput.py [--images 128]
"""
import argparse
import tempfile
import time

import common
import keras
import numpy as np
import tensorflow as tf

from fmfp_tf import data, models
import cleverhans_compat  # tests/cleverhans_compat.py, on the path through benchmarks/common.py
from fmfp_tf.attacks import cw_l2
from fmfp_tf.training.loop import fit

SETTINGS = {"learning_rate": 0.01, "initial_const": 0.01, "binary_search_steps": 3,
            "max_iterations": 50, "confidence": 0.0}


def trained_model():
    root = common.shared_data("gtsrb")
    name = "gtsrb" if root else "synthetic"
    train = data.load_arrays(name, root, "train", limit=3000)
    test = data.load_arrays(name, root, "test", limit=1000)
    keras.utils.set_random_seed(0)
    model = models.build("dnn1", train.images.shape[1:], 43)
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, keras.optimizers.Adam(1e-3), tf.distribute.get_strategy(), train, None,
            epochs=3, batch_size=32, seed=0, checkpoint_dir=tmp, verbose=0)
    return model, test, name


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=128)
    args = parser.parse_args()
    model, test, source = trained_model()
    x = test.images.astype(np.float32) / 255.0
    predicted = np.argmax(model.predict(x, verbose=0), -1)
    correct = np.flatnonzero(predicted == test.labels)[:args.images]
    x, y = x[correct], test.labels[correct].astype(np.int32)

    def success(x_adv):
        return float((np.argmax(model.predict(x_adv, verbose=0), -1) != y).mean())

    def ours():
        return cw_l2(model, x, y, batch_size=len(x), abort_early=True, **SETTINGS)

    def theirs():
        return np.asarray(cleverhans_compat.carlini_wagner_l2(
            model, x, batch_size=len(x), abort_early=True, clip_min=0.0, clip_max=1.0,
            **SETTINGS))

    results = {}
    for name, fn in (("fmfp-tf cw_l2", ours), ("CleverHans carlini_wagner_l2", theirs)):
        fn()  # warm-up: traces the graphs
        start = time.perf_counter()
        x_adv = fn()
        seconds = time.perf_counter() - start
        l2 = np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(-1))
        results[name] = (seconds, success(x_adv), float(np.median(l2)))
    ratio = results["CleverHans carlini_wagner_l2"][0] / results["fmfp-tf cw_l2"][0]
    lines = [f"| C&W-L2, dnn1 ({source}), {len(x)} correctly classified images, "
             f"{SETTINGS['binary_search_steps']} x {SETTINGS['max_iterations']} iterations | "
             "seconds | images/s | success rate | median L2 |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, (seconds, rate, l2) in results.items():
        lines.append(f"| {name} | {seconds:.1f} | {len(x) / seconds:.1f} | {100 * rate:.1f} % | "
                     f"{l2:.3f} |")
    lines += ["", f"Throughput ours / CleverHans: **{ratio:.2f}x** (target >= 1.0 at equal "
              "success)."]
    common.record("C&W throughput", lines,
                  f"python benchmarks/cw_throughput.py --images {args.images}")


if __name__ == "__main__":
    main()
