"""APGD-CE in float32 and with precision="bfloat16" on the same models and images: robust
accuracy and seconds after a warm-up call (docs/benchmarks.md, "bfloat16 attacks").

    python benchmarks/bfloat16_attacks.py RUN_DIR [RUN_DIR ...]
"""
import sys
import time

import common  # noqa: F401  (the repository on the path, quiet TensorFlow)
from attack_backends import images

from fmfp_tf import attacks
from fmfp_tf.models_io import load_model


def main(run_dirs):
    for run in run_dirs:
        x, y = images(run, 300)
        model = load_model(run)
        for precision in ("float32", "bfloat16"):
            attacks.apgd(model, x[:8], y[:8], eps=8 / 255, steps=2, precision=precision)
            start = time.perf_counter()
            adv = attacks.apgd(model, x, y, eps=8 / 255, steps=100, precision=precision)
            seconds = time.perf_counter() - start
            robust = int((attacks.common.predict_logits(model, adv).argmax(-1) == y).sum())
            print(f"{run}: {precision}: {robust} / {len(y)} robust, {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
