"""One evaluation split over many hosts: which images a shard holds, and joining shard folders.

`evaluate --shard K/N` takes the K-th of N contiguous parts of the seeded sample (images
skip+1 .. skip+n). Every random draw of an attack derives from (seed, the image's place in the
sample) (`attacks.common.per_image`), so a shard's per-image results are those the whole run
would give, and `join` puts the shards together into the records one run would have written:
accuracies from the concatenated per-image bits of the kept cells, the worst case recomputed per
image, passes and seconds summed.

What must not be joined is refused, naming the folder: a folder whose evaluation has not
finished, shards of different model files, settings, attacks, eps, seeds or samples, shards
holding the same images, and a missing shard of a `K/N` split.
"""
import json
import os

import numpy as np

from fmfp_tf.errors import UsageError
from fmfp_tf.evaluation import cells as cells_lib

_QUOTED = ("ci95_low", "ci95_high")  # derived when written; recomputed after a join


def parse_shard(text):
    """(k, count) from 'K/N' (1 <= K <= N): the K-th of N parts of the sample."""
    parts = str(text).split("/")
    try:
        k, count = (int(part) for part in parts)
    except ValueError:
        raise UsageError(f"--shard must be K/N, e.g. 2/8 (the second of 8 parts); got "
                         f"{text!r}") from None
    if count < 1:
        raise UsageError(f"--shard {text}: N (the number of parts) must be 1 or more")
    if not 1 <= k <= count:
        raise UsageError(f"--shard {text}: K must lie in 1..{count} (shards count from 1; a "
                         "0-based scheduler index is $((INDEX + 1)))")
    return k, count


def shard_range(k, count, n):
    """(first, stop) of shard k of `count` over n images: contiguous parts whose sizes differ
    by at most one, the same on every host."""
    first, stop = (k - 1) * n // count, k * n // count
    if count > n:  # some part would be empty
        raise UsageError(f"--shard {k}/{count} of --n {n}: some shard would hold no image; "
                         f"split {n} images into at most {n} shards")
    return first, stop


def _identity(record):
    """What names one measurement of one record, the per-image numbers aside."""
    return (record.get("model"), record.get("threat_model"), record.get("attack"),
            json.dumps(record.get("eps")), json.dumps(record.get("params"), sort_keys=True),
            record.get("skip") or 0, record.get("n"))


class _Folder:
    """One finished evaluation folder: its records and the per-image bits of its cells."""

    def __init__(self, folder):
        self.folder = folder
        path = os.path.join(folder, "results.json")
        try:
            with open(path, encoding="utf-8") as handle:
                payload = json.load(handle)
        except FileNotFoundError:
            raise UsageError(f"{folder}: no results.json: not an `fmfp-tf evaluate --out` "
                             "folder, or its evaluation has not finished (the same evaluate "
                             "command again finishes it)") from None
        except (OSError, ValueError) as error:
            raise UsageError(f"{path}: unreadable ({error})") from None
        records = payload.get("records") if isinstance(payload, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise UsageError(f"{path}: has no list of records")
        self.records = [{k: v for k, v in r.items() if k not in _QUOTED} for r in records]
        self.bits, self.model_digest = {}, {}
        kept = self._kept_cells()
        for record in self.records:
            if record.get("attack") in ("none", "worst-case"):
                continue
            found = kept.get(_identity(record))
            if found is None:
                raise UsageError(
                    f"{folder}: the kept cell of {record.get('model')} [{record.get('threat_model')}]"
                    f" {record.get('attack')} is missing from {folder}/cells (its per-image "
                    "results are needed to join; run the same evaluate command again)")
            saved_record, bits, parts = found
            if saved_record.get("accuracy") != record.get("accuracy"):
                raise UsageError(f"{folder}: results.json and the kept cell of "
                                 f"{record.get('model')} {record.get('attack')} disagree")
            self.bits[_identity(record)] = bits
            digest = parts.get("model")
            if digest is not None:
                known = self.model_digest.setdefault(record["model"], digest)
                if known != digest:
                    raise UsageError(f"{folder}: two model files named {record['model']}")

    def _kept_cells(self):
        """{identity: (record, bits, parts)} of the cells that are to be believed (a damaged
        one is left out, and the record needing it refused)."""
        store = cells_lib.CellStore(os.path.join(self.folder, "cells"))
        return {_identity(record): (record, bits, parts)
                for record, bits, parts in store.kept() if bits is not None}

    def sample(self, model):
        """(first image, stop, shard, sample size, seed, dataset) of `model` in this folder."""
        record = next(r for r in self.records if r.get("model") == model)
        first = record.get("skip") or 0
        return (first, first + record["n"], record.get("shard"), record.get("sample_n"),
                record.get("seed"), record.get("dataset"))


def join(folders):
    """The records of the evaluation `folders` (shards of one evaluation, or one folder) hold
    together, as one run over all their images would have written them."""
    if not folders:
        raise UsageError("give at least one evaluation folder")
    loaded = [_Folder(folder) for folder in folders]
    models = list(dict.fromkeys(r["model"] for r in loaded[0].records))
    for shard in loaded[1:]:
        others = list(dict.fromkeys(r["model"] for r in shard.records))
        if others != models:
            raise UsageError(f"{shard.folder} holds models {others}, {loaded[0].folder} holds "
                             f"{models}: shards of one evaluation hold the same models")
    records = []
    for model in models:
        records += _join_model(model, loaded)
    return records


def _join_model(model, loaded):
    order = sorted(loaded, key=lambda shard: shard.sample(model)[0])
    _check_samples(model, order)
    _check_same_measurements(model, order)
    first = order[0]
    mine = [r for r in first.records if r["model"] == model]
    joined, correct = [], {}
    for record in mine:
        matching = [next(r for r in shard.records if r["model"] == model
                         and _key(r) == _key(record)) for shard in order]
        if record["attack"] == "worst-case":
            continue  # recomputed below from the joined per-image bits
        out = dict(record, n=sum(r["n"] for r in matching), skip=matching[0].get("skip") or 0)
        out.pop("shard", None)
        if len(order) > 1:  # a median of shards' medians is no median: not reported
            out.pop("median_l2", None)
        if record["attack"] == "none":
            out["accuracy"] = _weighted(matching, "accuracy")
            if all(r.get("zero_gradient_share") is not None for r in matching):
                out["zero_gradient_share"] = _weighted(matching, "zero_gradient_share")
        else:
            bits = np.concatenate([shard.bits[_identity(r)] for shard, r in zip(order, matching)])
            out["accuracy"] = float(bits.mean())
            out["seconds"] = round(sum(r.get("seconds") or 0.0 for r in matching), 2)
            if all(r.get("passes") for r in matching):
                out["passes"] = {k: sum(r["passes"][k] for r in matching)
                                 for k in ("forward", "backward")}
            if all(r.get("components") for r in matching):
                out["components"] = {name: sum(r["components"][name] * r["n"] for r in matching)
                                     / out["n"] for name in record["components"]}
            correct[(record["threat_model"], json.dumps(record["eps"]), record["attack"])] = (
                bits, out.get("passes"))
        joined.append(out)
    for record in mine:
        if record["attack"] != "worst-case":
            continue
        named = record.get("params", {}).get("attacks", [])
        parts = [correct.get((record["threat_model"], json.dumps(record["eps"]), a))
                 for a in named]
        if any(part is None for part in parts) or not parts:
            raise UsageError(f"{first.folder}: the worst case of {model} "
                             f"[{record['threat_model']}] names attacks without kept cells")
        survive = np.logical_and.reduce([bits for bits, _ in parts])
        out = dict(record, n=int(len(survive)), skip=joined[0]["skip"],
                   accuracy=float(survive.mean()), seconds=0.0)
        out.pop("shard", None)
        if all(passes for _, passes in parts):
            out["passes"] = {k: sum(passes[k] for _, passes in parts)
                             for k in ("forward", "backward")}
        joined.append(out)
    return joined


def _key(record):
    return (record.get("threat_model"), record.get("attack"), json.dumps(record.get("eps")),
            json.dumps(record.get("params"), sort_keys=True), record.get("source_model"))


def _weighted(records, field):
    return sum(r[field] * r["n"] for r in records) / sum(r["n"] for r in records)


def _check_samples(model, order):
    """Shards of one sample: same dataset, seed and split, disjoint images, none missing."""
    samples = [shard.sample(model) for shard in order]
    for (shard, sample) in zip(order[1:], samples[1:]):
        for index, what in ((5, "dataset"), (4, "seed"), (3, "sample size (--n)")):
            if index == 3 and None in (sample[3], samples[0][3]):
                continue  # not both parts of a --shard split: checked below
            if sample[index] != samples[0][index]:
                raise UsageError(f"{shard.folder} and {order[0].folder}: different {what} for "
                                 f"{model} ({sample[index]!r} against {samples[0][index]!r}); "
                                 "shards of one evaluation share it")
    digests = {shard.model_digest.get(model) for shard in order} - {None}
    if len(digests) > 1:
        raise UsageError(f"{', '.join(s.folder for s in order)}: {model} is a different model "
                         "file in some of them; shards of one evaluation attack one model")
    for (before, a), (after, b) in zip(zip(order, samples), zip(order[1:], samples[1:])):
        if b[0] < a[1]:
            raise UsageError(f"{before.folder} and {after.folder} hold the same images of the "
                             f"sample ({model}: images {a[0] + 1}-{a[1]} and {b[0] + 1}-{b[1]})")
    split = [sample[2] for sample in samples]
    if any(split):
        if not all(split):
            raise UsageError(f"{model}: some folders are --shard K/N parts and some are not")
        counts = {text.split("/")[1] for text in split}
        if len(counts) > 1:
            raise UsageError(f"{model}: shards of different splits ({', '.join(split)})")
        count = int(counts.pop())
        missing = sorted(set(range(1, count + 1)) - {int(text.split("/")[0]) for text in split})
        if missing:
            raise UsageError(f"{model}: shard(s) {', '.join(f'{k}/{count}' for k in missing)} "
                             f"missing; give every one of the {count} shard folders")


def _check_same_measurements(model, order):
    """Every shard measured the same cells with the same settings."""
    def measured(shard):
        return sorted(_key(r) for r in shard.records if r["model"] == model)

    expected = measured(order[0])
    for shard in order[1:]:
        got = measured(shard)
        if got != expected:
            threat, attack, eps, params, _ = sorted(set(got) ^ set(expected))[0]
            raise UsageError(f"{shard.folder} and {order[0].folder} measured {model} "
                             "differently (attacks, eps, threat models or settings): only one "
                             f"has [{threat}] {attack} eps={eps} with {params}")

