"""The robust-GTSRB table of docs/robust-training.md from `fmfp-tf evaluate` output folders:
clean and robust accuracy with 95 % Wilson intervals per model and attack, and the paired
difference between two models under the same attack on the same images (per-image survival
read from each folder's kept cells), with its standard error.

    python benchmarks/robust_gtsrb_table.py NAME=EVAL_DIR [NAME=EVAL_DIR ...] \
        [--pair NAME_A:NAME_B ...] [--seeds RECIPE_A:RECIPE_B ...]

`NAME=DIR_1+DIR_2+...` joins the shards of one evaluation (`fmfp-tf evaluate --n N --skip K`):
they must follow one another in the seeded sample (skip 0, then the first's n, ...), and are
counted as the one evaluation of all their images.

A name `RECIPE@SEED` marks one training seed of a recipe; `--seeds A:B` compares the two
recipes' mean robust accuracy over their seeds, with a standard error from the seed-to-seed
spread (which the paired per-image error does not contain).

Every folder must come from the same --n and --seed (the same test images) for a pair to mean
anything; the script checks the image counts and refuses a pair of different sizes.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common import kept_cells  # noqa: E402  (benchmarks/common.py, beside this script)
from fmfp_tf.evaluation.report import wilson_interval  # noqa: E402


def cells(folder):
    """{(attack, threat, eps): (record, survival)} of one evaluation folder (cells at two eps
    values are two cells, never one)."""
    found = {}
    for record, survival in kept_cells(folder):
        found[(record["attack"], record["threat_model"], record["eps"])] = (record, survival)
    return found


def _same_measurement(shards, parts):
    """Shards join only when they measured one model with one set of settings: the same
    model, dataset and defense, and per cell the same attack parameters."""
    first_base, first_cells = parts[0]
    for folder, (base, kept) in zip(shards[1:], parts[1:]):
        for field in ("model", "dataset", "defense", "size"):
            if base.get(field) != first_base.get(field):
                sys.exit(f"{'+'.join(shards)}: {folder} measured {field} {base.get(field)!r}, "
                         f"the first shard {first_base.get(field)!r}; not joined")
        for key in set(kept) & set(first_cells):
            if kept[key][0].get("params") != first_cells[key][0].get("params"):
                sys.exit(f"{'+'.join(shards)}: {folder}'s {key[0]} ran with other settings "
                         f"({kept[key][0].get('params')} against "
                         f"{first_cells[key][0].get('params')}); not joined")


def clean(folder):
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as handle:
        records = json.load(handle)["records"]
    return next(r for r in records if r["attack"] == "none")


def joined(shards):
    """One evaluation's (clean record, cells) from its shard folders, in sample order: per cell,
    survival concatenated, n and seconds summed, accuracies (and AutoAttack's components)
    weighted by n."""
    parts = sorted(((clean(folder), cells(folder)) for folder in shards),
                   key=lambda part: part[0].get("skip") or 0)
    start = 0
    for folder, (base, _) in zip(shards, parts):
        if (base.get("skip") or 0) != start:
            sys.exit(f"{'+'.join(shards)}: the shards do not follow one another (a shard starts "
                     f"at image {base.get('skip') or 0} of the sample, expected {start})")
        start += base["n"]
    _same_measurement([folder for folder in shards], parts)
    keys = set.intersection(*(set(kept) for _, kept in parts))
    found = {}
    for key in keys:
        records = [kept[key][0] for _, kept in parts]
        survival = [kept[key][1] for _, kept in parts]
        found[key] = (merge(records), None if any(s is None for s in survival)
                      else np.concatenate(survival))
    return merge([base for base, _ in parts]), found


def merge(records):
    """The record of several shards' records of one cell."""
    n = sum(r["n"] for r in records)
    share = (lambda values: sum(v * r["n"] for v, r in zip(values, records)) / n) if n else (
        lambda values: 0.0)
    merged = {**records[0], "n": n, "skip": records[0].get("skip") or 0,
              "accuracy": share([r["accuracy"] for r in records]),
              "seconds": sum(r.get("seconds") or 0.0 for r in records)}
    if all("components" in r for r in records):
        merged["components"] = {name: share([r["components"][name] for r in records])
                                for name in records[0]["components"]}
    return merged


def percent(accuracy, n):
    low, high = wilson_interval(accuracy, n)
    return f"{100 * accuracy:.2f} ({100 * low:.1f}-{100 * high:.1f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=EVAL_DIR")
    parser.add_argument("--pair", action="append", default=[], help="NAME_A:NAME_B")
    parser.add_argument("--seeds", action="append", default=[], help="RECIPE_A:RECIPE_B")
    args = parser.parse_args()
    folders = dict(run.split("=", 1) for run in args.runs)
    bases, found = {}, {}
    for name, folder in folders.items():
        bases[name], found[name] = joined(folder.split("+"))
    print("| model | images | clean % | attack | robust % (95 % interval) | seconds |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for name in folders:
        base = bases[name]
        for (attack, threat, eps), (record, _) in sorted(found[name].items(),
                                                         key=lambda item: str(item[0])):
            budget = "" if eps is None or attack == "pgd-unbounded" else f", eps {eps:.4g}"
            print(f"| {name} | {record['n']} | {percent(base['accuracy'], base['n'])} | "
                  f"{attack} ({threat}{budget}) | {percent(record['accuracy'], record['n'])} | "
                  f"{record['seconds']:.0f} |")
            for component, share in record.get("components", {}).items():  # AutoAttack's
                print(f"| {name} | {record['n']} | | {attack}: after {component} | "
                      f"{percent(share, record['n'])} | |")
    for pair in args.pair:
        first, second = pair.split(":")
        for key in sorted(set(found[first]) & set(found[second]), key=str):
            a, b = found[first][key][1], found[second][key][1]
            if a is None or b is None or key[0] == "pgd-unbounded":
                continue
            if len(a) != len(b):
                sys.exit(f"{pair}: {key[0]} ran on {len(a)} and {len(b)} images; not paired")
            difference = a.astype(float) - b.astype(float)
            error = difference.std(ddof=1) / math.sqrt(len(difference))
            print(f"{first} - {second}, {key[0]}: {100 * difference.mean():+.2f} points "
                  f"(standard error {100 * error:.2f}; {len(a)} paired images)")
    for pair in args.seeds:
        print(seed_comparison(pair, found))


def seed_comparison(pair, found):
    """Difference of two recipes' mean robust accuracy over seeds, per attack, with the standard
    error of each mean from its seeds' spread (sample standard deviation / sqrt(seeds))."""
    recipes = pair.split(":")
    lines = []
    attacks = set.intersection(*(set(key for name, keys in found.items()
                                     if name.split("@")[0] == recipe for key in keys)
                                 for recipe in recipes))
    for key in sorted(attacks, key=str):
        if key[0] == "pgd-unbounded":
            continue
        means, errors, counts = [], [], []
        for recipe in recipes:
            values = [100 * keys[key][0]["accuracy"] for name, keys in found.items()
                      if name.split("@")[0] == recipe and key in keys]
            mean = sum(values) / len(values)
            spread = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                      if len(values) > 1 else float("nan"))
            means.append(mean)
            errors.append(spread / math.sqrt(len(values)))
            counts.append(len(values))
        error = math.sqrt(errors[0] ** 2 + errors[1] ** 2)
        lines.append(f"{recipes[0]} - {recipes[1]}, {key[0]}: {means[0]:.2f} - {means[1]:.2f} = "
                     f"{means[0] - means[1]:+.2f} points (standard error {error:.2f} from "
                     f"{counts[0]} and {counts[1]} seeds)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
