"""Evaluation split over hosts: `evaluate --shard K/N` parts joined by `fmfp-tf report` give the
records of one whole run, image for image (every random draw derives from the seed and the
image's place in the sample), and what must not be joined is refused by name."""
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from fmfp_tf.errors import UsageError
from fmfp_tf.evaluation import AttackSettings, evaluate, load_entry, write_report
from fmfp_tf.evaluation.cells import CellStore
from fmfp_tf.evaluation.shards import join, parse_shard, shard_range

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
ATTACKS = ["apgd-ce", "square"]


def _model(path, seed):
    keras.utils.set_random_seed(seed)
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                      keras.layers.Flatten(), keras.layers.Dense(43)]).save(path)
    return load_entry(str(path))


def _run(entry, out, batch_size=256, shard=None, n=40, seed=0, steps=4):
    settings = AttackSettings(apgd_steps=steps, square_queries=30, batch_size=batch_size,
                              unbounded_check=False, seed=seed)
    records = evaluate([entry], ATTACKS, eps_values=["2/255"], n=n, settings=settings,
                       dataset="synthetic", log=lambda _: None, store=CellStore(
                           os.path.join(out, "cells")), shard=shard)
    write_report(records, str(out))
    return records


def _comparable(records):
    return sorted(json.dumps({k: v for k, v in r.items() if k not in ("seconds", "skip")},
                             sort_keys=True) for r in records)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    entry = _model(root / "m.keras", 0)
    whole = _run(entry, root / "whole")
    _run(entry, root / "one", batch_size=7, shard="1/2")
    _run(entry, root / "two", batch_size=7, shard="2/2")
    return root, entry, whole


def test_two_shards_joined_are_the_whole_run_image_for_image(split):
    root, _, whole = split
    joined = join([str(root / "two"), str(root / "one")])  # in any order
    by_cell = {(r["attack"], r["threat_model"]): r for r in joined}
    for record in whole:
        got = by_cell[(record["attack"], record["threat_model"])]
        assert (got["n"], got["accuracy"]) == (record["n"], record["accuracy"]), record["attack"]
        if record.get("passes"):  # each image costs what it cost in the whole run, and each
            # further call one forward pass of one image (reading the number of classes)
            assert got["passes"]["backward"] == record["passes"]["backward"], record["attack"]
            assert 0 <= got["passes"]["forward"] - record["passes"]["forward"] <= 2
    shard = json.loads((root / "two" / "results.json").read_text())["records"][0]
    assert (shard["shard"], shard["sample_n"], shard["skip"], shard["n"]) == ("2/2", 40, 20, 20)
    # the kept cells of a part are those of the whole run's images: the bits concatenate
    assert any(0 < r["accuracy"] < 1 for r in joined if r["attack"] in ATTACKS)


@pytest.mark.extended
def test_report_joins_from_the_command_line_and_re_renders_one_folder(split, tmp_path):
    root, _, whole = split
    done = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", "report", str(root / "one"),
                           str(root / "two"), "--out", str(tmp_path / "joined")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    joined = json.loads((tmp_path / "joined" / "results.json").read_text())["records"]
    worst = next(r for r in joined if r["attack"] == "worst-case")
    expected = next(r for r in whole if r["attack"] == "worst-case")
    assert (worst["accuracy"], worst["n"]) == (expected["accuracy"], 40)
    assert worst["ci95_low"] < worst["accuracy"] < worst["ci95_high"] or worst["accuracy"] in (0, 1)
    assert "40 test images" in (tmp_path / "joined" / "results.md").read_text()
    again = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", "report",
                            str(root / "whole"), "--out", str(tmp_path / "again")],
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _comparable(json.loads((tmp_path / "again" / "results.json").read_text())["records"]) \
        == _comparable(json.loads((root / "whole" / "results.json").read_text())["records"])
    refused = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", "report", str(root / "one"),
                              str(root / "two"), "--out", str(root / "one")],
                             capture_output=True, text=True, env=ENV, timeout=300)
    assert refused.returncode != 0 and "is one of the shard folders" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_what_must_not_be_joined_is_refused(split, tmp_path):
    root, entry, _ = split
    with pytest.raises(UsageError, match=r"shard\(s\) 2/2 missing"):
        join([str(root / "one")])
    with pytest.raises(UsageError, match="hold the same images"):
        join([str(root / "one"), str(root / "whole")])
    other = _model(tmp_path / "m.keras", 1)
    _run(other, tmp_path / "other", shard="2/2")
    with pytest.raises(UsageError, match="different model file"):
        join([str(root / "one"), str(tmp_path / "other")])
    _run(entry, tmp_path / "steps", shard="2/2", steps=5)
    with pytest.raises(UsageError, match=r"measured m.keras differently .* only one has \[white-box\] apgd-ce"):
        join([str(root / "one"), str(tmp_path / "steps")])
    _run(entry, tmp_path / "seed", shard="2/2", seed=1)
    with pytest.raises(UsageError, match="different seed"):
        join([str(root / "one"), str(tmp_path / "seed")])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(root / "two", unfinished)
    (unfinished / "results.json").unlink()
    with pytest.raises(UsageError, match="no results.json"):
        join([str(root / "one"), str(unfinished)])
    no_cells = tmp_path / "no-cells"
    shutil.copytree(root / "two", no_cells)
    shutil.rmtree(no_cells / "cells")
    with pytest.raises(UsageError, match="kept cell of m.keras \\[white-box\\] apgd-ce is missing"):
        join([str(root / "one"), str(no_cells)])


@pytest.mark.parametrize("text, message", [
    ("0/2", "K must lie in 1..2"), ("3/2", "K must lie in 1..2"), ("1/0", "N .* must be 1"),
    ("a/b", "must be K/N"), ("1", "must be K/N")])
def test_bad_shards_are_one_line_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_shard(text)


def test_shards_partition_the_sample_and_an_empty_shard_is_refused():
    parts = [shard_range(k, 3, 10) for k in (1, 2, 3)]
    assert parts == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(UsageError, match="some shard would hold no image"):
        shard_range(3, 3, 2)


TWO_DEVICES = {
    # TensorFlow: two logical CPU devices, made before TensorFlow starts, then the CLI in-process
    "tensorflow": ("import sys, tensorflow as tf\n"
                   "cpu = tf.config.list_physical_devices('CPU')[0]\n"
                   "tf.config.set_logical_device_configuration(\n"
                   "    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
                   "from fmfp_tf.cli.main import main\n"
                   "sys.argv = ['fmfp-tf', *sys.argv[1:]]\n"
                   "main()\n"),
    # JAX: two virtual CPU devices from XLA's flag
    "jax": "import sys\nfrom fmfp_tf.cli.main import main\nsys.argv = ['fmfp-tf', *sys.argv[1:]]\n"
           "main()\n",
}


@pytest.mark.extended
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_one_and_two_devices_give_the_same_records(split, tmp_path, backend):
    """`evaluate --devices 2` (a MirroredStrategy over two logical CPU devices on TensorFlow, a
    DataParallel mesh over two XLA host devices on JAX) gives the records of one device, image
    for image; a count above the machine's devices is one line."""
    pytest.importorskip("jax")
    root = split[0]
    env = {**ENV, "KERAS_BACKEND": backend,
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    script = tmp_path / "cli.py"
    script.write_text(TWO_DEVICES[backend])

    def evaluate(devices, out):
        return subprocess.run(
            [sys.executable, str(script), "evaluate", "--model", str(root / "m.keras"),
             "--dataset", "synthetic", "--n", "40", "--attacks", "apgd-ce,square",
             "--apgd-steps", "4", "--square-queries", "30", "--eps", "2/255", "--batch-size",
             "20", "--no-unbounded-check", "--devices", devices, "--out", str(out)],
            capture_output=True, text=True, env=env, timeout=600)

    one, two = evaluate("1", tmp_path / "one"), evaluate("2", tmp_path / "two")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert "data-parallel over 2 devices" in two.stderr
    records = [json.loads((tmp_path / name / "results.json").read_text())["records"]
               for name in ("one", "two")]
    assert _comparable(records[0]) == _comparable(records[1])
    too_many = evaluate("3", tmp_path / "three")
    assert too_many.returncode != 0 and "devices 3: this machine has 2 local device(s)" in \
        too_many.stderr and "Traceback" not in too_many.stderr


@pytest.mark.extended
def test_the_slurm_array_and_the_indexed_job_run_here_as_two_processes(split, tmp_path):
    """docs/distributed: the Slurm array script and the Kubernetes Indexed Job's command, each
    run here as two concurrent processes (the scheduler's index set by hand), then the report
    script: both give the same joined records."""
    import yaml

    docs = os.path.join(os.path.dirname(__file__), "..", "docs", "distributed")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "fmfp-tf").write_text(f"#!/bin/sh\nexec {sys.executable} -m fmfp_tf_cli_start \"$@\"\n")
    (shim / "fmfp-tf").chmod(0o755)
    base = {**ENV, "PATH": f"{shim}{os.pathsep}{ENV.get('PATH', '')}",
            "MODEL": str(split[0] / "m.keras"), "N": "16", "ATTACKS": "apgd-ce",
            "EXTRA": "--dataset synthetic --apgd-steps 2 --no-unbounded-check --eps 2/255"}

    def run_all(commands):
        running = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
                   for command, env in commands]
        for process in running:
            _, err = process.communicate(timeout=600)
            assert process.returncode == 0, err[-2000:]

    slurm = {**base, "OUT": str(tmp_path / "slurm"), "SLURM_ARRAY_TASK_COUNT": "2",
             "SLURM_ARRAY_TASK_MIN": "0"}
    run_all([(["bash", os.path.join(docs, "slurm_array.sh")],
              {**slurm, "SLURM_ARRAY_TASK_ID": str(index)}) for index in (0, 1)])
    job = yaml.safe_load(open(os.path.join(docs, "indexed_job.yaml")))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["spec"]["completionMode"] == "Indexed" and container["command"] == ["bash", "-c"]
    k8s = {**base, "OUT": str(tmp_path / "k8s"), "SHARDS": "2"}
    run_all([(["bash", "-c", container["args"][0]], {**k8s, "JOB_COMPLETION_INDEX": str(index)})
             for index in (0, 1)])
    for env in (slurm, k8s):
        run_all([(["bash", os.path.join(docs, "report.sh")], env)])
    joined = [json.loads((tmp_path / name / "joined" / "results.json").read_text())["records"]
              for name in ("slurm", "k8s")]
    assert joined[0][0]["n"] == 16 and _comparable(joined[0]) == _comparable(joined[1])
