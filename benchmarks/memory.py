"""Peak resident memory of a GTSRB training run and of a 1,000-image C&W evaluation, each in its own
process, plus the resident memory after every epoch. A leak shows as a steady rise after the
first few epochs (TensorFlow's allocator and traced functions warm up during those): the script
fits a line to the resident memory from epoch `--warmup` + 1 on and reports its slope.

    python benchmarks/memory.py [--train 1000 --epochs 30 --n 1000]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import common

MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
           "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
           "sys.exit(code)")


def peak_mb(command):
    result = subprocess.run([sys.executable, "-c", MEASURE] + command, capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    line = [l for l in result.stdout.splitlines() if l.startswith("PEAK_KB")][-1]
    return int(line.split()[1]) / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    root = common.shared_data("gtsrb")
    data = ["--dataset", "gtsrb", "--data-dir", root] if root else []
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        train_peak = peak_mb(["fmfp-tf", "train", *data, "--defense", "mask", "--size", "20%",
                              "--train-limit", str(args.train), "--epochs", str(args.epochs),
                              "--quiet", "--out", run])
        with open(os.path.join(run, "metrics.json")) as handle:
            history = json.load(handle)["history"]
        eval_peak = peak_mb(["fmfp-tf", "evaluate", "--model", run, "--attacks", "cw",
                             "--threat", "white-box", "--n", str(args.n), "--cw-iterations",
                             "30", "--cw-binary-steps", "3", "--out", os.path.join(tmp, "eval")])
    per_epoch = [record["rss_mb"] for record in history]
    settled = per_epoch[args.warmup:]
    if len(settled) >= 3:
        slope = float(np.polyfit(np.arange(len(settled)), settled, 1)[0])
        trend = (f"after epoch {args.warmup}: {min(settled):.0f}-{max(settled):.0f} MiB, "
                 f"fitted slope {slope:+.2f} MiB per epoch over {len(settled)} epochs.")
    else:
        trend = f"too few epochs after the {args.warmup} of warm-up to fit a trend."
    lines = ["| process | peak RSS (MiB) |", "| --- | ---: |",
             f"| `fmfp-tf train` GTSRB dnn1 FM, {args.train} images x {args.epochs} epochs | "
             f"{train_peak:.0f} |",
             f"| `fmfp-tf evaluate` C&W-L2 (3 x 30 iterations) on {args.n} GTSRB images | "
             f"{eval_peak:.0f} |", "",
             "Resident memory after each epoch (MiB): "
             + ", ".join(f"{v:.0f}" for v in per_epoch) + "; " + trend]
    common.record("Memory", lines, f"python benchmarks/memory.py --train {args.train} --epochs "
                  f"{args.epochs} --warmup {args.warmup} --n {args.n}")


if __name__ == "__main__":
    main()
