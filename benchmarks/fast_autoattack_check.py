"""`autoattack-fast` against the standard AutoAttack, image by image, on the same images.

    python benchmarks/fast_autoattack_check.py --model RUN --data-dir DATA \
        (--standard EVAL_DIR[+EVAL_DIR...] | --n N) [--out RESULT.json]

`--standard` reads the standard ensemble's per-image survival from `fmfp-tf evaluate --attacks
autoattack` folders (their kept cells; shards joined in sample order) and attacks the same images;
without it, both ensembles run here on the seeded sample's first N images. `--both EVAL_DIR`
attacks nothing: it compares the two cells of one `fmfp-tf evaluate --attacks
autoattack,autoattack-fast` folder (both counted; resumable, as every evaluation is). Prints one row of the
table in docs/evaluation.md: both robust accuracies with 95 % Wilson intervals, the images the
fast ensemble calls robust that the standard broke (and the reverse), and the forward and
backward pass ratios. Passes are counted (`fmfp_tf.attacks.counting`); for a standard read from
cells older than the counts, its passes are a lower bound computed from its components (one
gradient for each image an APGD stage broke, every step for the images it left, and every
attack in full on the survivors), so the ratio shown is then a lower bound too.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as bench  # noqa: E402,F401  (sets up the import path and quiet logs)

from fmfp_tf.attacks import counting  # noqa: E402
from fmfp_tf.evaluation import attack_specs  # noqa: E402
from fmfp_tf.evaluation.attack_specs import AttackSettings  # noqa: E402
from fmfp_tf.evaluation.report import wilson_interval  # noqa: E402
from fmfp_tf.evaluation.robustness import load_entry, test_images  # noqa: E402


def standard_cells(folders):
    """(survival, first skip, record of each shard) of the standard AutoAttack in `folders`."""
    parts = []
    for folder in folders:
        for record, survival in bench.kept_cells(folder):
            if record["attack"] == "autoattack" and record["threat_model"] == "white-box":
                parts.append((record.get("skip") or 0, record, survival))
    parts.sort(key=lambda part: part[0])
    for (skip, record, _), (next_skip, _, _) in zip(parts, parts[1:]):
        if skip + record["n"] != next_skip:
            sys.exit(f"the standard shards do not follow one another: skip {skip} + n "
                     f"{record['n']} != skip {next_skip}")
    if not parts:
        sys.exit(f"no white-box autoattack cell in {', '.join(folders)}")
    return (np.concatenate([survival for _, _, survival in parts]), parts[0][0],
            [record for _, record, _ in parts])


def both_cells(folders):
    """{attack: (records, survival)} of the white-box ensembles in evaluation folders that
    follow one another (shards of one sample: `--shard K/N` or `--skip`), survival joined in
    the sample's order."""
    found = {}
    for folder in folders:
        kept = {record["attack"]: (record, survival) for record, survival in
                bench.kept_cells(folder) if record["threat_model"] == "white-box"
                and record["attack"] in ("autoattack", "autoattack-fast")}
        if len(kept) != 2:
            sys.exit(f"{folder}: expected an autoattack and an autoattack-fast cell; found "
                     f"{', '.join(kept) or 'none'}")
        for attack, part in kept.items():
            found.setdefault(attack, []).append(part)
    joined = {}
    for attack, parts in found.items():
        parts.sort(key=lambda part: part[0].get("skip") or 0)
        for (record, _), (following, _) in zip(parts, parts[1:]):
            if (record.get("skip") or 0) + record["n"] != (following.get("skip") or 0):
                sys.exit(f"the {attack} shards do not follow one another: skip "
                         f"{record.get('skip') or 0} + n {record['n']} != skip "
                         f"{following.get('skip') or 0}")
        joined[attack] = ([record for record, _ in parts],
                          np.concatenate([survival for _, survival in parts]))
    return joined


def standard_lower_bound(records, clean_correct, params):
    """Passes the standard ensemble runs at least, from each shard's components, as APGD runs
    now (an image leaves a run once it falls): one gradient for each image an APGD stage
    broke, every step for the images it left standing, FAB-T and Square in full on the
    survivors."""
    steps, targets, queries = params["steps"], params["target_classes"], params["queries"]
    forward = backward = 0
    for record in records:
        n, shares = record["n"], record["components"]
        after_ce, survivors = shares["apgd-ce"] * n, shares["square"] * n
        gradients = ((clean_correct[record["skip"]] - after_ce) + (steps + 1) * after_ce
                     + (after_ce - survivors) + (steps + 1) * targets * survivors)
        fab = steps * targets * survivors
        backward += gradients + fab
        forward += gradients + 2 * fab + (queries + 1) * survivors + 4 * n  # and the predictions
    return counting.Passes(int(forward), int(backward))


def run(attack, entry, x, y, settings, label):
    spec = attack_specs.get(attack)
    started, last = time.time(), [time.time()]

    def progress(k, total, robust=None):
        if time.time() - last[0] > 30 or k == total:
            last[0] = time.time()
            print(f"  {label}: {k}/{total} ({time.time() - started:.0f} s)", flush=True)

    with counting.counted() as passes:
        x_adv = spec.craft(entry.model, x, y, settings.eps, settings.settings, progress)
    from fmfp_tf.attacks import common

    survived = common.predict_logits(entry.model, x_adv, 256).argmax(-1) == y
    return survived, passes, time.time() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--data-dir")
    parser.add_argument("--both", help="EVAL_DIR[+EVAL_DIR...] holding both ensembles' cells "
                                       "(shards in the sample's order)")
    parser.add_argument("--standard", help="EVAL_DIR[+EVAL_DIR...] with the standard cells")
    parser.add_argument("--n", type=int, help="images, when the standard runs here")
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--out", help="where the result (per-image bits too) is written")
    args = parser.parse_args()
    if args.both:
        found = both_cells(args.both.split("+"))
        (standard_records, standard), (fast_records, fast) = (found["autoattack"],
                                                             found["autoattack-fast"])

        def total(records):
            return (sum((counting.Passes.from_dict(r["passes"]) for r in records[1:]),
                        counting.Passes.from_dict(records[0]["passes"])),
                    sum(r["seconds"] for r in records))

        (standard_passes, standard_seconds), (fast_passes, fast_seconds) = (
            total(standard_records), total(fast_records))
        report(args, argparse.Namespace(
            model=standard_records[0]["model"], precision="float32",
            eps=standard_records[0]["eps"]),
            standard, fast, standard_passes, fast_passes, True, standard_seconds, fast_seconds)
        return
    if not (args.model and args.data_dir):
        parser.error("--model and --data-dir are needed unless --both is given")
    entry = load_entry(args.model)
    settings = argparse.Namespace(eps=args.eps, settings=AttackSettings(
        precision=args.precision))
    if args.standard:
        standard, skip, records = standard_cells(args.standard.split("+"))
        x, y, _, _ = test_images(entry, len(standard), data_dir=args.data_dir, skip=skip)
        from fmfp_tf.attacks import common

        correct = common.predict_logits(entry.model, x, 256).argmax(-1) == y
        firsts = {r["skip"]: int(correct[r["skip"] - skip:r["skip"] - skip + r["n"]].sum())
                  for r in records}
        standard_passes = standard_lower_bound(records, firsts, records[0]["params"])
        counted, standard_seconds = False, sum(r["seconds"] for r in records)
    else:
        x, y, _, _ = test_images(entry, args.n, data_dir=args.data_dir)
        standard, standard_passes, standard_seconds = run("autoattack", entry, x, y, settings,
                                                          "autoattack")
        counted = True
    fast, fast_passes, fast_seconds = run("autoattack-fast", entry, x, y, settings,
                                          "autoattack-fast")
    report(args, args, standard, fast, standard_passes, fast_passes, counted, standard_seconds,
           fast_seconds)


def report(args, what, standard, fast, standard_passes, fast_passes, counted, standard_seconds,
           fast_seconds):
    """Prints (and with --out writes) the comparison of the two ensembles' per-image results."""
    n = len(standard)
    row = {"model": what.model, "n": n, "eps": what.eps, "precision": what.precision,
           "standard": float(standard.mean()), "fast": float(fast.mean()),
           "standard_ci95": wilson_interval(float(standard.mean()), n),
           "fast_ci95": wilson_interval(float(fast.mean()), n),
           "fast_robust_standard_broke": int((fast & ~standard).sum()),
           "standard_robust_fast_broke": int((standard & ~fast).sum()),
           "standard_passes": standard_passes.as_dict(), "standard_passes_counted": counted,
           "fast_passes": fast_passes.as_dict(),
           "forward_ratio": standard_passes.forward / max(fast_passes.forward, 1),
           "backward_ratio": standard_passes.backward / max(fast_passes.backward, 1),
           "standard_seconds": standard_seconds, "fast_seconds": round(fast_seconds, 1),
           "machine": bench.machine_line()}
    print(json.dumps({k: v for k, v in row.items()}, indent=1))
    bound = "" if counted else " (standard's passes: a lower bound)"
    print(f"| {os.path.basename(os.path.normpath(what.model))} | {n} | "
          f"{100 * row['standard']:.2f} ({100 * row['standard_ci95'][0]:.1f}-"
          f"{100 * row['standard_ci95'][1]:.1f}) | {100 * row['fast']:.2f} "
          f"({100 * row['fast_ci95'][0]:.1f}-{100 * row['fast_ci95'][1]:.1f}) | "
          f"{row['fast_robust_standard_broke']} | {row['standard_robust_fast_broke']} | "
          f"{row['forward_ratio']:.1f}x | {row['backward_ratio']:.1f}x |{bound}")
    if args.out:
        row["fast_bits"] = np.packbits(fast).tobytes().hex()
        row["standard_bits"] = np.packbits(standard).tobytes().hex()
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(row, handle, indent=1)


if __name__ == "__main__":
    main()
