"""Robust-training recipes side by side on GTSRB dnn1: PGD-AT and fast-AT, each alone, with FM
(20 %) and with FP (20 %), each without and with weight averaging (EMA), plus plain training for
the cost reference. Every run uses the same seeded training subset, schedule and epochs; each
model is then attacked white-box with APGD-CE and APGD-T (the AutoAttack ensemble's gradient
attacks) on the same test images, and the per-image worst case is reported.

    python benchmarks/robust_recipes.py [--train-limit 8000] [--epochs 8] [--n 500]

Trained runs and their evaluations are kept in --runs, so an interrupted benchmark resumes; the
table goes to docs/robust-training.md.
"""
import argparse
import json
import os

import common

from fmfp_tf import atomic
from fmfp_tf.config import TrainConfig

RECIPES = [("plain", "none", None), ("pgd-at", "pgd-at", None),
           ("FM 20% + pgd-at", "mask+pgd-at", "20%"), ("FP 20% + pgd-at", "padding+pgd-at", "20%"),
           ("fast-at", "fast-at", None), ("FM 20% + fast-at", "mask+fast-at", "20%"),
           ("FP 20% + fast-at", "padding+fast-at", "20%")]


def config_for(defense, size, ema, args, data_dir):
    return TrainConfig(dataset="gtsrb", data_dir=data_dir, model="dnn1", defense=defense,
                       size=size, epochs=args.epochs, batch_size=128, optimizer="adam",
                       schedule="one-cycle", learning_rate=0.003, train_limit=args.train_limit,
                       seed=0, weight_averaging="ema" if ema else "none",
                       ema_decay=0.995 if ema else 0.999)


def trained(config, root):
    from fmfp_tf.training.run import train_cached

    return train_cached(config, root)


def robust(run_dir, args):
    """{attack: accuracy} white-box, cached beside the run."""
    from fmfp_tf.evaluation.attack_specs import AttackSettings
    from fmfp_tf.evaluation.robustness import evaluate, load_entry

    path = os.path.join(run_dir, f"robust-n{args.n}.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    settings = AttackSettings(apgd_steps=100, apgd_target_classes=args.targets,
                              unbounded_check=False)
    records = evaluate([load_entry(run_dir)], ["apgd-ce", "apgd-t"], [8 / 255], ["white-box"],
                       args.n, settings=settings, log=lambda message: None)
    found = {r["attack"]: r["accuracy"] for r in records}
    atomic.write_json(path, found)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-limit", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--runs", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                       "fmfp_tf", "robust-recipes"))
    parser.add_argument("--only", help="comma-separated recipe labels to run (default all)")
    args = parser.parse_args()
    data_dir = common.shared_data("gtsrb")
    if data_dir is None:
        raise SystemExit("needs ../shared/data/gtsrb")
    wanted = set(args.only.split(",")) if args.only else None
    rows, plain_epoch = [], None
    for label, defense, size in RECIPES:
        for ema in ((False,) if defense == "none" else (False, True)):
            name = label + (" + EMA" if ema else "")
            if wanted and name not in wanted and label not in wanted:
                continue
            run_dir, metrics = trained(config_for(defense, size, ema, args, data_dir), args.runs)
            # the first epoch carries graph tracing: the median of the others is the cost
            seconds = sorted(h["seconds"] for h in metrics["history"][1:])[
                len(metrics["history"][1:]) // 2]
            # per training image: adversarial runs train on 512 fewer (the probe)
            seconds_per_image = seconds / metrics["dataset"]["train_examples"]
            if defense == "none":
                plain_epoch = seconds_per_image
            found = robust(run_dir, args) if defense != "none" else {}
            rows.append((name, metrics, seconds, seconds_per_image, found))
            print(name, round(metrics["test_accuracy"], 4), seconds, found, flush=True)
    lines = [f"GTSRB dnn1, a seeded subset of {args.train_limit:,} training images (512 of them "
             f"held out as the robust probe under adversarial training), {args.epochs} epochs, "
             "Adam one-cycle (peak 3e-3), batch 128, bfloat16 training, eps 8/255 (PGD-AT: 7 "
             "steps of 2.5 eps/7; fast-AT: one step of 1.25 eps from a random start). EMA decay "
             f"0.995 with warm-up. White-box robust accuracy on {args.n} test images (the same "
             f"for every model): APGD-CE and APGD-T ({args.targets} target classes), 100 steps "
             "each; worst case = per image over both.", "",
             "| recipe | clean % | APGD-CE % | APGD-T % | worst case % | s / epoch | plain "
             "epochs per epoch (per image) | best probe epoch | collapse |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, metrics, seconds, per_image, found in rows:
        selection = metrics.get("robust_selection") or {}
        cost = f"{per_image / plain_epoch:.1f}" if plain_epoch else "-"
        cells = [f"{100 * found[a]:.1f}" if a in found else "-"
                 for a in ("apgd-ce", "apgd-t", "worst-case")]
        lines.append(f"| {name} | {100 * metrics['test_accuracy']:.1f} | {' | '.join(cells)} | "
                     f"{seconds:.1f} | {cost} | {selection.get('best_epoch', '-')} | "
                     f"{selection.get('collapsed_epochs') or 'none'}"
                     f"{' (restored)' if selection.get('restored') else ''} |")
    common.record("Robust-training recipes, GTSRB dnn1", lines,
                  f"python benchmarks/robust_recipes.py --train-limit {args.train_limit} "
                  f"--epochs {args.epochs} --n {args.n} --targets {args.targets}",
                  doc="robust-training.md")


if __name__ == "__main__":
    main()
