"""The scale-out issue's check: one model, 64 GTSRB test images, APGD-CE and Square; the
per-image results must be identical for batch 256 and 16, for two `--shard` parts joined by
`fmfp-tf report`, and for one and two JAX devices.

    python benchmarks/scale_out_check.py --model RUN_DIR --data-dir ../shared/data/gtsrb \\
        --out OUT [--n 64]

Runs `fmfp-tf evaluate` (TensorFlow) with --batch-size 256 and 16, the two shards and
`fmfp-tf report`, then on JAX with two XLA host devices `--devices 1` and `--devices 2`; prints
and writes OUT/check.json: per attack, whether each variant's per-image bits equal the reference.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as bench  # noqa: E402


def fmfp(args, env=None):
    done = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode:
        sys.exit(done.stderr[-2000:])


def bits(folder):
    """{attack: per-image survival} of the white-box cells of `folder` (joined reports: of the
    shard folders' cells, concatenated in sample order)."""
    found = {}
    for record, survival in bench.kept_cells(folder):
        if record["attack"] in ("apgd-ce", "square") and survival is not None:
            found.setdefault(record["attack"], []).append((record.get("skip") or 0, survival))
    return {attack: [int(b) for _, part in sorted(parts) for b in part]
            for attack, parts in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    common_args = ["evaluate", "--model", args.model, "--data-dir", args.data_dir, "--n",
                   str(args.n), "--attacks", "apgd-ce,square", "--no-unbounded-check"]
    out = args.out
    fmfp(common_args + ["--batch-size", "256", "--out", f"{out}/batch256"])
    fmfp(common_args + ["--batch-size", "16", "--out", f"{out}/batch16"])
    for k in (1, 2):
        fmfp(common_args + ["--shard", f"{k}/2", "--out", f"{out}/shard{k}"])
    fmfp(["report", f"{out}/shard1", f"{out}/shard2", "--out", f"{out}/joined"])
    jax = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    for devices in (1, 2):
        fmfp(common_args + ["--devices", str(devices), "--batch-size", "32", "--out",
                            f"{out}/jax-devices{devices}"], jax)
    reference, jax_one = bits(f"{out}/batch256"), bits(f"{out}/jax-devices1")
    result = {"n": args.n, "reference": {a: sum(v) for a, v in reference.items()}}
    for name, folder, against in (("batch16", "batch16", reference),
                                  ("two shards joined", "shard1", None),
                                  ("jax two devices", "jax-devices2", jax_one)):
        got = (bits(folder if os.path.isabs(folder) else f"{out}/{folder}")
               if against is not None else
               {a: bits(f"{out}/shard1")[a] + bits(f"{out}/shard2")[a] for a in reference})
        compare = against if against is not None else reference
        result[name] = {a: got[a] == compare[a] for a in compare}
    joined = json.load(open(f"{out}/joined/results.json"))["records"]
    whole = json.load(open(f"{out}/batch256/results.json"))["records"]
    result["report accuracies equal"] = all(
        any(j["attack"] == w["attack"] and j["accuracy"] == w["accuracy"] for j in joined)
        for w in whole)
    result["jax one device vs tensorflow (numerics differ)"] = {
        a: sum(x != y for x, y in zip(jax_one[a], reference[a])) for a in reference}
    text = json.dumps(result, indent=1)
    print(text)
    with open(f"{out}/check.json", "w") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
