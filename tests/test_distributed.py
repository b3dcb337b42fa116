"""tf.distribute: MirroredStrategy matches the default strategy (training and attacks); two local
workers agree."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

MIRRORED_SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from fmfp_tf import data, models
from fmfp_tf.training.loop import fit

train = data.load_arrays("synthetic", split="train", limit=512)
test = data.load_arrays("synthetic", split="test", limit=128)
losses = {}
for name, strategy in (("default", tf.distribute.get_strategy()),
                       ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.build("dnn4", (32, 32, 3), 43)  # no dropout: no per-replica randomness
        optimizer = keras.optimizers.Adam(1e-3)
    history = fit(model, optimizer, strategy, train, test, epochs=2, batch_size=64, seed=0,
                  checkpoint_dir=sys.argv[1] + "/" + name, verbose=0)
    losses[name] = {"replicas": strategy.num_replicas_in_sync,
                    "loss": [r["loss"] for r in history],
                    "test_loss": [r["test_loss"] for r in history]}

# PGD adversarial training with FM and weight averaging under the mirrored strategy runs, lowers
# the loss, and averages in cross-replica context
from fmfp_tf.config import TrainConfig
from fmfp_tf.defenses import defend
from fmfp_tf.training.adversarial import perturbation
from fmfp_tf.training.averaging import ExponentialAverage
import numpy as np
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = TrainConfig(defense="mask+pgd-at", size="8px", at_steps=2, seed=0)
with strategy.scope():
    model = defend(models.build("dnn4", (32, 32, 3), 43), "mask", 8, seed=0)
    optimizer = keras.optimizers.Adam(1e-3)
    attack = perturbation(config, model)
    average = ExponentialAverage(model, decay=0.9)
history = fit(model, optimizer, strategy, train, test, epochs=2, batch_size=64, seed=0,
              checkpoint_dir=sys.argv[1] + "/pgd", perturbation=attack, averaging=average,
              verbose=0)
losses["pgd_at_mirrored"] = [r["loss"] for r in history]
losses["ema_updates"] = int(average.updates.numpy())
losses["ema_differs"] = bool(any(
    not np.allclose(a.numpy(), w.numpy()) for a, w in zip(average.average, average.weights)))

# attacks under the strategy: each replica crafts its share; the gathered result equals the
# single-device attack (PGD without random start, so it is deterministic)
import numpy as np
from fmfp_tf.attacks.distributed import craft_distributed
from fmfp_tf.attacks.fgsm import fgsm_graph
from fmfp_tf.attacks.pgd import pgd_graph
x = test.images[:100].astype("float32") / 255.0
y = test.labels[:100]
with strategy.scope():
    attacked = models.build("dnn4", (32, 32, 3), 43)
eps = 8 / 255
crafted = {}
for name, graph in (("fgsm", lambda a, b: fgsm_graph(attacked, a, b, eps)),
                    ("pgd", lambda a, b: pgd_graph(attacked, a, b, eps, eps / 4, 5, "inf", False))):
    crafted[name] = [craft_distributed(s, graph, x, y, batch_size=32)
                     for s in (tf.distribute.get_strategy(), strategy)]
losses["attacks"] = {name: {"max_diff": float(np.abs(a - b).max()),
                            "max_delta": float(np.abs(b - x).max()),
                            "changed": float((np.abs(b - x) > 0).mean())}
                     for name, (a, b) in crafted.items()}
print(json.dumps(losses))
"""


@pytest.mark.extended
def test_mirrored_over_two_cpus_matches_default_strategy(tmp_path):
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)],
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert losses["mirrored"]["replicas"] == 2 and losses["default"]["replicas"] == 1
    # same seed and global batch: the same losses up to float summation order (stated: 1e-4)
    pgd = losses["pgd_at_mirrored"]
    assert len(pgd) == 2 and all(v == v for v in pgd) and pgd[1] < pgd[0]
    # one average update per global step (not one per replica), and the average moved
    steps = -(-512 // 64)  # the 512 synthetic training images
    assert losses["ema_updates"] == 2 * steps and losses["ema_differs"]
    for name, stats in losses["attacks"].items():
        assert stats["max_diff"] <= 1e-5, (name, stats)  # same examples as on one device
        assert stats["max_delta"] <= 8 / 255 + 1e-6 and stats["changed"] > 0.5, (name, stats)
    for key in ("loss", "test_loss"):
        for a, b in zip(losses["default"][key], losses["mirrored"][key]):
            assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (key, a, b)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(out_dirs, extra=(), epochs=3):
    """Two `fmfp-tf train --strategy multiworker` processes on 127.0.0.1, one per out dir."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index, out_dir in enumerate(out_dirs):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "fmfp_tf_cli_start", "train", "--strategy", "multiworker",
             "--defense", "mask", "--size", "8", "--epochs", str(epochs), "--train-limit", "430",
             "--test-limit", "100", "--quiet", "--out", str(out_dir), *extra],
            env={**ENV, "TF_CONFIG": json.dumps(tf_config)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    return processes


def finish(processes):
    """Waits for the workers; returns their weights digests."""
    digests = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        digests.append(stdout.strip().splitlines()[-1].split("weights_sha256 ")[1].split()[0])
    return digests


def epochs_checkpointed(run_dir):
    state = run_dir / "checkpoints" / "state.json"
    try:
        return len(json.loads(state.read_text())["history"])
    except (OSError, ValueError):
        return 0  # not written yet, or being replaced


@pytest.mark.extended
def test_two_local_workers_train_fm_to_identical_weights_and_restart_from_the_chief(tmp_path):
    straight = finish(start_workers([tmp_path / "worker0", tmp_path / "worker1"]))
    assert straight[0] == straight[1]
    # only the chief writes the run directory
    metrics = json.loads((tmp_path / "worker0" / "metrics.json").read_text())
    assert metrics["strategy"]["requested"] == "multiworker"
    assert metrics["strategy"]["replicas"] == 2
    assert not (tmp_path / "worker1" / "metrics.json").exists()

    # a crash: both workers (sharing a run directory, as on a shared file system) are killed
    # once the chief has checkpointed epoch 1; both restart with --resume from the chief's files
    shared = tmp_path / "shared"
    processes = start_workers([shared, shared])
    deadline = time.time() + 600
    while epochs_checkpointed(shared) < 1 and time.time() < deadline:
        assert all(p.poll() is None for p in processes), "a worker ended before epoch 1"
        time.sleep(0.02)
    for process in processes:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    done = epochs_checkpointed(shared)
    assert 1 <= done < 3 and not (shared / "metrics.json").exists(), "the kill came too late"
    resumed = finish(start_workers([shared, shared], extra=["--resume"]))
    # same weights as the uninterrupted run, on both workers
    assert resumed == straight
    metrics = json.loads((shared / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["weights_sha256"].startswith(straight[0])
