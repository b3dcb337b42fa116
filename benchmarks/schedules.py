"""Learning curves of training recipes on a real dataset: which schedule reaches the paper's clean
accuracy in the fewest image-passes. Each recipe trains a model with `fmfp_tf.training.train` and
records the test accuracy after every epoch; the table goes to docs/models.md.

    python benchmarks/schedules.py --model dnn1 \\
        --recipe "optimizer=adam schedule=one-cycle learning_rate=0.003 batch_size=128 epochs=8"

A recipe is TrainConfig keys as KEY=VALUE (values read as YAML). Runs are kept in --runs, named
as in any model cache (`fmfp_tf.runs.cache_entry`), and a recipe already run there is read back
instead of trained again: with --runs pointing at a `reproduce` cache (OUT/models or --cache),
a recipe equal to a table column's settings is the same entry both ways.
"""
import argparse
import os

import common
import yaml

from fmfp_tf.config import train_config
from fmfp_tf.reproduction import paper_numbers


def parse_recipe(text):
    values = {}
    for item in text.split():
        key, _, value = item.partition("=")
        values[key] = yaml.safe_load(value)
    return values


def run(dataset, model, recipe, runs_dir):
    data_dir = common.shared_data({"gtsrb": "gtsrb", "orl": "att_faces", "yale": "yalefaces"}[
        dataset])
    if data_dir is None:
        raise SystemExit(f"needs ../shared/data for {dataset}")
    config = train_config({"dataset": dataset, "data_dir": data_dir, "model": model, **recipe},
                          "recipe")
    from fmfp_tf.training.run import train_cached

    return config, train_cached(config, runs_dir)[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gtsrb", choices=("gtsrb", "orl", "yale"))
    parser.add_argument("--model", default="dnn1")
    parser.add_argument("--recipe", action="append", required=True)
    parser.add_argument("--runs", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                       "fmfp_tf", "schedule-runs"))
    args = parser.parse_args()
    paper = paper_numbers.lookup(3, args.dataset, args.model, "none")
    lines = [f"Paper (table 3, clean): {paper} %. Test accuracy (%) after each epoch on the whole "
             "test set; seconds are the training epochs' sum on this machine.", "",
             "| recipe | precision | accuracy by epoch | final | seconds |",
             "| --- | --- | --- | ---: | ---: |"]
    for text in args.recipe:
        config, metrics = run(args.dataset, args.model, parse_recipe(text), args.runs)
        curve = " ".join(f"{100 * h['test_accuracy']:.1f}" for h in metrics["history"])
        seconds = sum(h["seconds"] for h in metrics["history"])
        lines.append(f"| `{text}` | {metrics['precision']['used']} | {curve} | "
                     f"{100 * metrics['test_accuracy']:.2f} | {seconds:.0f} |")
        print(lines[-1], flush=True)
    common.record(f"Learning curves: {args.dataset} {args.model}", lines,
                  "python benchmarks/schedules.py --dataset " + args.dataset + " --model "
                  + args.model + "".join(f' --recipe "{r}"' for r in args.recipe),
                  doc="models.md")


if __name__ == "__main__":
    main()
