"""Shared by the benchmarks: interleaved timing, machine facts, and the docs/benchmarks.md table."""
import json
import logging
import os
import re
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# tests/cleverhans_compat.py: CleverHans on Keras 3, the reference some benchmarks compare with
sys.path.insert(1, os.path.join(ROOT, "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# models built one after another each trace the attack graphs anew; TensorFlow calls it retracing
logging.getLogger("tensorflow").setLevel(logging.ERROR)


def interleaved(functions, rounds=7, repeats=5, warmup=2):
    """Median seconds per call of each function, measured in alternating rounds.

    Alternating the candidates within every round makes their ratio robust to the load of a
    shared machine drifting over time.
    """
    samples = interleaved_samples(functions, rounds, repeats, warmup)
    return {name: statistics.median(values) for name, values in samples.items()}


def round_ratios(samples, reference):
    """{name: (median, lower quartile, upper quartile)} of each round's time over the
    reference's time in the same round: the spread of a ratio on a machine whose load drifts."""
    result = {}
    for name, values in samples.items():
        ratios = sorted(v / r for v, r in zip(values, samples[reference]))
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        result[name] = (statistics.median(ratios), quartiles[0], quartiles[-1])
    return result


def interleaved_samples(functions, rounds=7, repeats=5, warmup=2):
    """{name: [seconds per call in each round]}, the candidates alternating within each round."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            samples[name].append((time.perf_counter() - start) / repeats)
    return samples


def machine_line():
    from fmfp_tf import provenance

    machine = provenance.machine()
    versions = provenance.versions()
    gpus = ", ".join(machine["gpus"]) or "no GPU"
    framework = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}[
        versions["keras_backend"]]
    return (f"{machine['processor']}, {machine['cpu_count']} cores, {gpus}; "
            f"{framework} {versions[versions['keras_backend']]}, Keras {versions['keras']}")


def record(section, lines, command, doc="benchmarks.md"):
    """Replaces (or appends) `section` in docs/`doc`, written atomically."""
    from fmfp_tf import atomic

    path = os.path.join(ROOT, "docs", doc)
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    block = (f"<!-- {section} -->\n## {section}\n\nCommand: `{command}`  \nMachine: "
             f"{machine_line()}\n\n" + "\n".join(lines) + f"\n<!-- /{section} -->\n")
    pattern = re.compile(rf"<!-- {re.escape(section)} -->.*?<!-- /{re.escape(section)} -->\n",
                         re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block
    atomic.write_text(path, text)
    print("\n".join(lines))


def dump(name, payload):
    print(json.dumps({name: payload}, indent=1))


def shared_data(name):
    """../shared/data/<name> when present (the real datasets beside the repository), else None."""
    path = os.path.join(os.path.dirname(ROOT), "shared", "data", name)
    return path if os.path.isdir(path) else None


def kept_cells(folder):
    """(record, per-image survival) of each kept cell of an `fmfp-tf evaluate` folder; a cell the
    store refuses (forged, damaged) stops the script with its reason."""
    from fmfp_tf.evaluation.cells import CellStore

    store = CellStore(os.path.join(folder, "cells"))
    for record, survival, _ in store.kept(on_damage=lambda where, why: sys.exit(
            f"{where}: {why}; not read")):
        yield record, survival
