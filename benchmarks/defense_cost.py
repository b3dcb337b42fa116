"""What each defense costs to train, and the white-box PGD accuracy it buys.

dnn1 on a sample of GTSRB (synthetic when ../shared is absent), each defense trained the same way
in one run: epoch time (the last epoch, after graph tracing) and total wall time, then clean and
white-box PGD-20 accuracy (L-inf 8/255) on held-out test images. Target: FM / FP epoch time <= 0.2
of PGD-7 adversarial training's.

    python benchmarks/defense_cost.py [--train 3000 --epochs 2 --n 300]
"""
import argparse
import tempfile

import common
import keras

from fmfp_tf.attacks import pgd
from fmfp_tf.config import TrainConfig
from fmfp_tf.evaluation.robustness import load_entry, test_images
from fmfp_tf.training.run import train

DEFENSES = (("none", None), ("mask", 0.2), ("padding", "4px"), ("pgd-at", None), ("cw-at", None))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    root = common.shared_data("gtsrb")
    dataset = "gtsrb" if root else "synthetic"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        twin_dir = f"{tmp}/none"
        for defense, size in DEFENSES:
            keras.backend.clear_session()
            config = TrainConfig(dataset=dataset, data_dir=root, model="dnn1", defense=defense,
                                 size=size, epochs=args.epochs, train_limit=args.train,
                                 test_limit=1000, seed=0)
            run_dir = f"{tmp}/{defense}"
            metrics = train(config, run_dir, verbose=0,
                            twin_dir=twin_dir if defense == "cw-at" else None)
            entry = load_entry(run_dir)
            x, y, _, _ = test_images(entry, args.n)
            clean = float((entry.model.predict(x, verbose=0).argmax(-1) == y).mean())
            x_adv = pgd(entry.model, x, y, eps=8 / 255, steps=20, seed=0)
            robust = float((entry.model.predict(x_adv, verbose=0).argmax(-1) == y).mean())
            rows[defense] = {"epoch": metrics["history"][-1]["seconds"],
                             "wall": metrics["wall_seconds"], "clean": clean, "pgd": robust}
            print(defense, rows[defense], flush=True)
    pgd_epoch = rows["pgd-at"]["epoch"]
    # cw-at pays for crafting once, before training: its wall time (minus the twin it reuses)
    # spread over its epochs is its per-epoch cost
    rows["cw-at"]["epoch_all_in"] = (rows["cw-at"]["wall"]) / args.epochs
    lines = [f"| dnn1, {args.train} {dataset} images x {args.epochs} epochs | seconds per epoch "
             "| over PGD-7 AT | over C&W-AT (all in) | clean acc. | white-box PGD-20 acc. |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for defense, _ in DEFENSES:
        row = rows[defense]
        epoch = row.get("epoch_all_in", row["epoch"])
        label = {"none": "undefended", "mask": "FM (z = 20 % of the side)",
                 "padding": "FP (z = 4 px)", "pgd-at": "PGD-7 AT",
                 "cw-at": "C&W-AT (crafting + training, per epoch)"}[defense]
        lines.append(f"| {label} | {epoch:.1f} | {epoch / pgd_epoch:.3f} | "
                     f"{epoch / rows['cw-at']['epoch_all_in']:.3f} | {100 * row['clean']:.1f} % | "
                     f"{100 * row['pgd']:.1f} % |")
    lines += ["", f"FM / PGD-7 AT: **{rows['mask']['epoch'] / pgd_epoch:.3f}**, FP / PGD-7 AT: "
              f"**{rows['padding']['epoch'] / pgd_epoch:.3f}** (target <= 0.2). Accuracy on "
              f"{args.n} test images; PGD-20 with one random start, step 2.5 * eps / 20."]
    common.record("Defense cost", lines,
                  f"python benchmarks/defense_cost.py --train {args.train} --epochs {args.epochs}"
                  f" --n {args.n}")


if __name__ == "__main__":
    main()
