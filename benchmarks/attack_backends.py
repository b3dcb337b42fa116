"""The same `.keras` model attacked on TensorFlow and on JAX, and the TensorFlow path against the
attack code it replaced.

Each candidate runs in its own process (a Keras backend is chosen per process): the same images
(a seeded sample of the GTSRB test split), the same seeds. Reported: robust accuracy with its
95 % interval, and seconds per attack after a warm-up call (compilation excluded), the
candidates alternating round by round so that the machine's load cancels out of the ratios.

    python benchmarks/attack_backends.py --model RUN_DIR_OR_KERAS [--n 300] [--rounds 3]
        [--old-ref 9572024] [--jax-python PYTHON] [--queries 5000] [--skip-autoattack]
        [--skip-jax-autoattack] [--skip-bfloat16-autoattack]

--old-ref: a git commit whose `fmfp_tf/attacks` is the code to compare speed with (the last
TensorFlow-only version); --jax-python: a Python with Keras and JAX (default: this one, with
KERAS_BACKEND=jax).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import common
import numpy as np

EPS = 8 / 255

WORKER = r"""
import json, sys, time, numpy as np
sys.path.insert(0, sys.argv[1])
import keras
import fmfp_tf
from fmfp_tf import attacks
from fmfp_tf.models_io import load_model
model = load_model(sys.argv[2])
data = np.load(sys.argv[3])
x, y = data["x"], data["y"]
name, queries, precision = sys.argv[4], int(sys.argv[5]), sys.argv[6]
extra = {} if precision == "float32" else {"precision": precision}  # the old code has no option
run = {"apgd-ce": lambda a, b: attacks.apgd(model, a, b, eps=%r, steps=100, **extra),
       "autoattack": lambda a, b: attacks.autoattack(model, a, b, eps=%r, queries=queries,
                                                     **extra)}[name]
run(x[:8], y[:8])  # compiles
start = time.perf_counter()
x_adv = run(x, y)
seconds = time.perf_counter() - start
logits = attacks.common.predict_logits(model, x_adv)
print(json.dumps({"backend": keras.backend.backend(), "seconds": seconds,
                  "robust": int((logits.argmax(-1) == y).sum()), "n": int(len(y))}))
""" % (EPS, EPS)


def images(model_path, n):
    from fmfp_tf import data, runs
    from fmfp_tf.models_io import resolve_model_path

    run_dir = os.path.dirname(resolve_model_path(model_path))
    config = runs.read_config(run_dir)
    arrays = data.load_arrays(config.dataset, config.data_dir, "test", (32, 32))
    order = np.random.default_rng(0).permutation(len(arrays.labels))[:n]
    return arrays.images[order].astype(np.float32) / 255.0, arrays.labels[order]


def run_worker(python, code_root, model, arrays, attack, queries, backend, precision):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=code_root)
    done = subprocess.run([python, "-c", WORKER, code_root, model, arrays, attack, str(queries),
                           precision], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{backend} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def old_tree(ref, tmp):
    """The package as of `ref`, extracted beside (not over) this checkout."""
    archive = subprocess.run(["git", "-C", common.ROOT, "archive", ref, "fmfp_tf"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return tmp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--old-ref", default="9572024")
    parser.add_argument("--jax-python", default=sys.executable)
    parser.add_argument("--skip-autoattack", action="store_true")
    parser.add_argument("--skip-jax-autoattack", action="store_true",
                        help="JAX on a CPU takes about 12x TensorFlow's time")
    parser.add_argument("--skip-bfloat16-autoattack", action="store_true",
                        help="bfloat16 without AMX takes about 3x float32's time")
    args = parser.parse_args()
    from fmfp_tf.evaluation.report import wilson_interval

    with tempfile.TemporaryDirectory() as tmp:
        x, y = images(args.model, args.n)
        arrays = os.path.join(tmp, "images.npz")
        np.savez(arrays, x=x, y=y)
        old = old_tree(args.old_ref, tempfile.mkdtemp(dir=tmp))
        candidates = {
            "TensorFlow, this code": (sys.executable, common.ROOT, "tensorflow", "float32"),
            f"TensorFlow, {args.old_ref}": (sys.executable, old, "tensorflow", "float32"),
            "JAX, this code": (args.jax_python, common.ROOT, "jax", "float32"),
            "TensorFlow, this code, bfloat16": (sys.executable, common.ROOT, "tensorflow",
                                                "bfloat16"),
        }
        attacks = ["apgd-ce"] + ([] if args.skip_autoattack else ["autoattack"])
        results = {}
        for attack in attacks:
            for _ in range(args.rounds if attack == "apgd-ce" else 1):
                for name, (python, root, backend, precision) in candidates.items():
                    if attack == "autoattack" and name.startswith(f"TensorFlow, {args.old_ref}"):
                        continue  # the old ensemble had no FAB-T: not the same attack
                    if attack == "autoattack" and backend == "jax" and args.skip_jax_autoattack:
                        continue
                    if (attack == "autoattack" and precision == "bfloat16"
                            and args.skip_bfloat16_autoattack):
                        continue
                    out = run_worker(python, root, args.model, arrays, attack, args.queries,
                                     backend, precision)
                    results.setdefault((attack, name), []).append(out)
                    print(attack, name, out, flush=True)

    lines = [f"{args.n} GTSRB test images (seeded sample), L-inf eps 8/255, model "
             f"`{os.path.basename(os.path.normpath(args.model))}`; APGD-CE 100 steps; "
             f"AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square {args.queries}); seconds after "
             "a warm-up call, median over rounds", "",
             "| attack | backend, code | robust accuracy (95 % interval) | seconds | time / TF this code |",
             "| --- | --- | --- | --- | --- |"]
    for attack in attacks:
        reference = statistics.median(r["seconds"] for r in
                                      results[(attack, "TensorFlow, this code")])
        for name in candidates:
            if (attack, name) not in results:
                continue
            runs = results[(attack, name)]
            robust = runs[0]["robust"] / runs[0]["n"]
            low, high = wilson_interval(robust, runs[0]["n"])
            seconds = statistics.median(r["seconds"] for r in runs)
            lines.append(f"| {attack} | {name} | {100 * robust:.2f} % ({100 * low:.1f}-"
                         f"{100 * high:.1f}) | {seconds:.1f} | {seconds / reference:.2f} |")
    section = f"Attacks on TensorFlow and JAX: {os.path.basename(os.path.normpath(args.model))}"
    common.record(section, lines, "python benchmarks/attack_backends.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
