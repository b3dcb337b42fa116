"""Time of one I-FGSM / PGD step over one forward+backward pass of the model (a compiled
gradient), and of CleverHans's own PGD for comparison. Target: <= 1.05.

One step's cost is taken as (time of 2k steps - time of k steps) / k, which removes the fixed cost
of a call (random start, batching, the final projection).

    python benchmarks/attack_step_cost.py
"""
import common  # noqa: F401
import keras
import numpy as np
import tensorflow as tf

from fmfp_tf import attacks, models
import cleverhans_compat  # tests/cleverhans_compat.py, put on the path by benchmarks/common.py
from fmfp_tf.attacks.common import loss_gradient

BATCH, K = 256, 10


def main():
    keras.utils.set_random_seed(0)
    model = models.build("dnn1", (32, 32, 3), 43)
    x_np = np.random.default_rng(0).random((BATCH, 32, 32, 3)).astype(np.float32)
    y_np = np.random.default_rng(1).integers(0, 43, BATCH).astype(np.int32)
    x, y = tf.constant(x_np), tf.constant(y_np)

    @tf.function
    def gradient():
        return loss_gradient(model, x, y)[0]

    eps = 8 / 255

    def ours(name, steps):
        if name == "ifgsm":
            return lambda: attacks.ifgsm(model, x_np, y_np, eps=eps, steps=steps,
                                         batch_size=BATCH)
        return lambda: attacks.pgd(model, x_np, y_np, eps=eps, steps=steps, batch_size=BATCH)

    def theirs(steps):
        return lambda: cleverhans_compat.projected_gradient_descent(
            model, x, eps, eps / 4, steps, np.inf, clip_min=0.0, clip_max=1.0, y=y_np,
            sanity_checks=False).numpy()

    candidates = {"gradient": lambda: gradient().numpy()}
    for name in ("ifgsm", "pgd"):
        candidates[f"{name} x{K}"] = ours(name, K)
        candidates[f"{name} x{2 * K}"] = ours(name, 2 * K)
    candidates[f"cleverhans pgd x{K}"] = theirs(K)
    candidates[f"cleverhans pgd x{2 * K}"] = theirs(2 * K)
    times = common.interleaved(candidates, rounds=7, repeats=2)
    base = times["gradient"]
    lines = [f"| attack (dnn1, batch {BATCH}) | ms per step | ratio to one forward+backward | "
             "target |", "| --- | ---: | ---: | --- |",
             f"| forward+backward (compiled gradient) | {1000 * base:.1f} | 1.000 | |"]
    for name in ("ifgsm", "pgd", "cleverhans pgd"):
        per_step = (times[f"{name} x{2 * K}"] - times[f"{name} x{K}"]) / K
        target = "<= 1.05" if not name.startswith("cleverhans") else "(reference)"
        lines.append(f"| {name} | {1000 * per_step:.1f} | {per_step / base:.3f} | {target} |")
    common.record("Attack step cost", lines, "python benchmarks/attack_step_cost.py")


if __name__ == "__main__":
    main()
