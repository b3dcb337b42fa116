"""Our FAB-T against an independent FAB: torchattacks 3.5.1's, on the same weights and images.

Runs on Keras's PyTorch backend, where a `.keras` model is a `torch.nn.Module` that torchattacks
can attack directly; both attacks are targeted L-inf FAB with AutoAttack's settings (9 targets,
100 steps, 1 restart, alpha_max 0.1, eta 1.05, beta 0.9) at eps 8/255. Robust accuracy with its
95 % interval and seconds, side by side in one process. Benchmark-only dependencies:

    pip install torch torchattacks==3.5.1
    KERAS_BACKEND=torch python benchmarks/fab_vs_torchattacks.py --model RUN_DIR [--n 300]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPS = 8 / 255


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    import keras
    import torch
    import torchattacks

    from fmfp_tf import attacks, data, runs
    from fmfp_tf.evaluation.report import wilson_interval
    from fmfp_tf.models_io import load_model, resolve_model_path

    if keras.backend.backend() != "torch":
        raise SystemExit("run with KERAS_BACKEND=torch: torchattacks attacks torch modules")
    path = resolve_model_path(args.model)
    config = runs.read_config(os.path.dirname(path))
    arrays = data.load_arrays(config.dataset, config.data_dir, "test", (32, 32))
    order = np.random.default_rng(0).permutation(len(arrays.labels))[:args.n]
    x = arrays.images[order].astype(np.float32) / 255.0
    y = arrays.labels[order].astype(np.int32)
    model = load_model(path)

    def accuracy(x_adv):
        return float((attacks.common.predict_logits(model, x_adv).argmax(-1) == y).mean())

    results = {}
    start = time.perf_counter()
    ours = attacks.fab(model, x, y, eps=EPS, steps=args.steps, target_classes=9)
    results["fmfp_tf.attacks.fab (FAB-T)"] = (accuracy(ours), time.perf_counter() - start)
    # torchattacks: n_classes=10 gives its multi-targeted FAB the classes ranked 2nd..10th
    theirs = torchattacks.FAB(model, norm="Linf", eps=EPS, steps=args.steps, n_restarts=1,
                              alpha_max=0.1, eta=1.05, beta=0.9, multi_targeted=True,
                              n_classes=10, seed=0)
    start = time.perf_counter()
    adv = theirs(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))
    adv = adv.detach().cpu().numpy()
    assert np.abs(adv - x).max() <= EPS + 1e-5
    results["torchattacks 3.5.1 FAB (multi-targeted)"] = (accuracy(adv),
                                                          time.perf_counter() - start)
    print(f"{args.n} test images, L-inf eps 8/255, {args.steps} steps, 9 targets, clean "
          f"{100 * accuracy(x):.2f} %, model {args.model}, torch {torch.__version__}")
    print("| attack | robust accuracy (95 % interval) | seconds |")
    print("| --- | --- | --- |")
    for name, (robust, seconds) in results.items():
        low, high = wilson_interval(robust, len(y))
        print(f"| {name} | {100 * robust:.2f} % ({100 * low:.1f}-{100 * high:.1f}) | "
              f"{seconds:.0f} |")


if __name__ == "__main__":
    main()
