"""APGD-CE and autoattack-fast in float32 and with precision="bfloat16" on the same models and
images: robust accuracy and seconds after a warm-up call (docs/benchmarks.md, "bfloat16
attacks"). The two precisions alternate attack by attack, so a drifting load hits both alike.

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
        print(common.machine_line(), flush=True)
        for name, attack, kwargs in (("apgd-ce", attacks.apgd, {"steps": 100}),
                                     ("autoattack-fast", attacks.autoattack_fast, {})):
            for precision in ("float32", "bfloat16"):
                attacks.apgd(model, x[:8], y[:8], eps=8 / 255, steps=2, precision=precision)
                start = time.perf_counter()
                adv = attack(model, x, y, eps=8 / 255, precision=precision, **kwargs)
                seconds = time.perf_counter() - start
                robust = int((attacks.common.predict_logits(model, adv).argmax(-1) == y).sum())
                print(f"{run}: {name} {precision}: {robust} / {len(y)} robust, {seconds:.1f} s",
                      flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
