"""`fmfp-tf train` through Keras's own `fit` (training/keras_run.py): the job JAX and PyTorch
run, with the TensorFlow job's run directory, metrics and refusals."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = ["--epochs", "3", "--train-limit", "600", "--test-limit", "200", "--probe-images", "64",
        "--quiet"]


def test_the_fit_job_writes_the_run_directory_of_the_tensorflow_job(tmp_path):
    # in process, on the suite's backend: the route itself (JAX runs it below, in a subprocess)
    import keras

    from fmfp_tf.config import train_config
    from fmfp_tf.models_io import load_model
    from fmfp_tf.training import keras_run

    config = train_config({"defense": "mask+fast-at", "size": "20%", "epochs": 2,
                           "train_limit": 300, "test_limit": 100, "probe_images": 32,
                           "weight_averaging": "ema"}, "test")
    metrics = keras_run.train(config, str(tmp_path / "run"), verbose=0)
    run = tmp_path / "run"
    for name in ("model.keras", "metrics.json", "history.png", "config.json",
                 "checkpoints/state.json"):
        assert (run / name).exists(), name
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["backend"] == keras.backend.backend()
    assert len(metrics["robust_probe"]["history"]) == 2
    assert set(metrics["history"][0]) >= {"loss", "accuracy", "test_loss", "test_accuracy",
                                          "probe_robust_accuracy"}
    reloaded = load_model(str(run))
    assert reloaded.count_params() == metrics["model"]["parameters"]
    # the same run again is refused; --resume of a finished run has nothing left to train
    with pytest.raises(Exception, match="already holds a run"):
        keras_run.train(config, str(run), verbose=0)
    again = keras_run.train(None, str(run), resume=True, verbose=0)
    assert again["history"] == metrics["history"]


def test_a_bfloat16_fit_run_trains_mixed_and_saves_a_float32_model(tmp_path):
    """precision bfloat16 on the fit route: the layers compute in bfloat16 while training, the
    saved (averaged) model computes in float32, and the record says which precision was used;
    auto on a machine without a GPU of compute capability 8.0+ is float32 off TensorFlow."""
    import keras

    from fmfp_tf.config import train_config
    from fmfp_tf.models_io import load_model
    from fmfp_tf.attacks.common import predict_logits
    from fmfp_tf.training import keras_run, precision
    from fmfp_tf.training.run_directory import load_split, weights_digest

    config = train_config({"defense": "nfgsm-at", "epochs": 1, "train_limit": 300,
                           "test_limit": 100, "probe_images": 0, "weight_averaging": "ema",
                           "precision": "bfloat16"}, "test")
    metrics = keras_run.train(config, str(tmp_path / "run"), verbose=0)
    assert metrics["precision"] == {"requested": "bfloat16", "used": "bfloat16"}
    assert np.isfinite(metrics["history"][0]["loss"])
    reloaded = load_model(str(tmp_path / "run"))
    assert {layer.dtype_policy.compute_dtype for layer in reloaded.layers} == {"float32"}
    # the saved float32 model is the trained one, and the one the metrics measured
    assert weights_digest(reloaded) == metrics["weights_sha256"]
    test = load_split(config, "test")
    images = test.images.astype("float32") / 255.0
    accuracy = (predict_logits(reloaded, images).argmax(-1) == test.labels).mean()
    assert accuracy == pytest.approx(metrics["test_accuracy"])
    if keras.backend.backend() != "tensorflow":
        assert precision.resolve("auto") == "float32"  # the suite runs on CPUs


def test_the_fit_job_shifts_its_batches_from_the_run_seed(tmp_path, monkeypatch):
    """augment shift on the fit route: `fit` gets the seeded batches with the shift applied,
    and the run trains on them (the TensorFlow loop's augmentation, on every backend)."""
    from fmfp_tf.config import train_config
    from fmfp_tf.training import batches, keras_run

    made = []
    original = batches.SeededBatches

    def recording(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(batches, "SeededBatches", recording)
    config = train_config({"defense": "fast-at", "epochs": 1, "train_limit": 300,
                           "test_limit": 100, "probe_images": 0, "augment": "shift",
                           "augment_shift": 2}, "test")
    metrics = keras_run.train(config, str(tmp_path / "run"), verbose=0)
    assert np.isfinite(metrics["history"][0]["loss"]) and metrics["config"]["augment"] == "shift"
    dataset = made[0]
    assert dataset.augment is not None and dataset.seed == config.seed
    images, labels = dataset[0]
    assert not np.array_equal(images, dataset.x[dataset.order[:len(labels)]])  # shifted


def test_a_method_registered_without_a_fit_route_is_refused_in_one_line(monkeypatch):
    from fmfp_tf import defense_registry
    from fmfp_tf.config import train_config
    from fmfp_tf.errors import UsageError
    from fmfp_tf.training import keras_run

    monkeypatch.setitem(defense_registry.ADVERSARIAL_TRAINING._entries, "toy",
                        defense_registry.AdversarialTraining("toy", "a plugin's", "toy:craft"))
    monkeypatch.setitem(defense_registry.ADVERSARIAL_TRAINING._origins, "toy", "test")
    config = train_config({"defense": "toy-at"}, "test")
    with pytest.raises(UsageError, match="toy-at crafts its examples with TensorFlow"):
        keras_run.check(config)


@pytest.mark.parametrize("method", ["trades", "mart"])
def test_a_kl_method_trains_through_the_fit_route_with_its_beta(tmp_path, monkeypatch, method):
    from fmfp_tf.config import train_config
    from fmfp_tf.training import keras_fit, keras_run

    built = []
    monkeypatch.setattr(keras_run, "AdversarialModel",
                        lambda *a, **k: built.append(keras_fit.AdversarialModel(*a, **k))
                        or built[-1])
    config = train_config({"defense": f"{method}-at", f"{method}_beta": 3.0, "at_steps": 2,
                           "epochs": 1, "train_limit": 300, "test_limit": 100,
                           "probe_images": 0}, "test")
    metrics = keras_run.train(config, str(tmp_path / "run"), verbose=0)
    assert built[0].settings.method == method and built[0].settings.beta == 3.0
    assert built[0].settings.steps == 2
    assert metrics["history"][0]["loss"] > 0


@pytest.mark.parametrize("setting, message", [
    ({"defense": "cw-at"}, "cw-at crafts its C&W examples with the TensorFlow loop"),
    ({"strategy": "mirrored"}, "on one device"),
    ({"precision": "float16"}, "'float16' needs loss scaling"),
])
def test_what_the_fit_job_cannot_honour_is_one_line_before_any_work(tmp_path, setting,
                                                                    message):
    from fmfp_tf.config import train_config
    from fmfp_tf.errors import UsageError
    from fmfp_tf.training import keras_run

    with pytest.raises(UsageError, match=message):
        keras_run.train(train_config(setting, "test"), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def _train(*args):
    return [sys.executable, "-m", "fmfp_tf_cli_start", "train", *args]


@pytest.mark.extended
def test_fmfp_tf_train_on_jax_stops_and_resumes_at_its_last_epoch(tmp_path):
    env = dict(ENV, KERAS_BACKEND="jax")
    straight = tmp_path / "straight"
    done = subprocess.run(_train("--defense", "nfgsm-at", *TINY, "--out", str(straight)),
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["epochs"] == 3
    # killed after its first epoch's checkpoint, then --resume: three epochs in all, the first
    # as the killed run wrote it
    killed = tmp_path / "killed"
    process = subprocess.Popen(_train("--defense", "nfgsm-at", *TINY, "--out", str(killed)),
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and not state.exists():
        time.sleep(0.5)
    assert state.exists(), "no checkpoint after the first epoch"
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = json.loads(state.read_text())["history"]
    resumed = subprocess.run(_train("--resume", "--out", str(killed), "--quiet"),
                             capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = json.loads((killed / "metrics.json").read_text())
    assert after["epochs"] == 3 and after["history"][:len(first)] == first
    # the same batches (batches.SeededBatches) and random draws (the checkpointed seed state)
    # as the run never stopped: the same weights, bit for bit
    assert after["weights_sha256"] == metrics["weights_sha256"]
    # the run is read by evaluate like any other
    evaluated = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", "evaluate",
                                "--model", str(killed), "--attacks", "fgsm", "--n", "50",
                                "--no-unbounded-check", "--out", str(tmp_path / "eval")],
                               capture_output=True, text=True, env=env, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]


def test_a_resumed_run_keeps_the_guards_best_epoch(tmp_path):
    """The overfitting guard's best weights go with every checkpoint: after a stop, a collapse
    is measured against (and restored to) the best epoch before it, not the first one after."""
    import keras
    import numpy as np

    from fmfp_tf.training.keras_fit import RobustProbe
    from fmfp_tf.training.keras_run import _Checkpoint

    def model():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])

    first, folder = model(), str(tmp_path / "checkpoints")
    optimizer = keras.optimizers.Adam()
    optimizer.build(first.trainable_variables)
    probe = RobustProbe(np.zeros((2, 4, 1, 1), np.float32), [0, 1], model=first)
    checkpoint = _Checkpoint(folder, first, optimizer)
    checkpoint.watch(probe)
    best = [np.full_like(w, 0.5) for w in first.get_weights()]
    probe.best, probe.best_weights = 0.75, best  # what the probe found in this epoch
    checkpoint.on_epoch_begin(0)
    checkpoint.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5, "probe_robust_accuracy": 0.75})

    second = model()
    optimizer = keras.optimizers.Adam()
    resumed = _Checkpoint(folder, second, optimizer)
    done, history = resumed.restore(second)
    probe = RobustProbe(np.zeros((2, 4, 1, 1), np.float32), [0, 1], model=second)
    resumed.watch(probe)
    assert done == 1 and probe.history == [0.75] and probe.best == 0.75
    for kept, expected in zip(probe.best_weights, best):
        np.testing.assert_array_equal(kept, expected)
    # a file no state names (a process killed before state.json was rewritten) is not read
    (tmp_path / "checkpoints" / "epoch-2.npz").write_bytes(b"half written")
    assert _Checkpoint(folder, model(), keras.optimizers.Adam()).restore(model())[0] == 1
    # a checkpoint of the layout before one file per epoch still resumes
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    with np.load(tmp_path / "checkpoints" / state.pop("file")) as kept:
        for name, prefix in (("weights", "w"), ("optimizer", "v"), ("probe-best", "p")):
            count = sum(key.startswith(prefix) for key in kept.files)
            key = "w" if prefix == "p" else prefix
            np.savez(tmp_path / "checkpoints" / f"{name}.npz",
                     **{f"{key}{i}": kept[f"{prefix}{i}"] for i in range(count)})
    for leftover in ("epoch-1.npz", "epoch-2.npz"):
        os.remove(tmp_path / "checkpoints" / leftover)
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps(state))
    third, optimizer = model(), keras.optimizers.Adam()
    old = _Checkpoint(folder, third, optimizer)
    assert old.restore(third)[0] == 1
    for kept, expected in zip(third.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(kept, expected)
    old.watch(probe)
    np.testing.assert_array_equal(probe.best_weights[0], best[0])
    old.on_epoch_begin(1)
    old.on_epoch_end(1, {"loss": 1.0, "accuracy": 0.5})  # the next one: the new layout alone
    assert sorted(os.listdir(folder)) == ["epoch-2.npz", "state.json"]


def test_a_fit_run_stopped_by_sigterm_keeps_its_last_epoch_and_resumes(tmp_path, monkeypatch):
    """SIGTERM in the middle of an epoch: fit stops at that batch's end, the epoch under way is
    dropped, the checkpoint after the last whole epoch is the one file state.json names, and
    --resume trains the rest."""
    from fmfp_tf.config import train_config
    from fmfp_tf.errors import Interrupted
    from fmfp_tf.training import keras_run

    original = keras_run._StopOnSignal.on_train_batch_end

    def signalling(self, batch, logs=None):  # the second epoch's second batch has trained
        if self.epoch == 1 and batch == 1 and not sent:
            sent.append(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch, logs)

    sent = []
    monkeypatch.setattr(keras_run._StopOnSignal, "on_train_batch_end", signalling)
    config = train_config({"defense": "fast-at", "epochs": 3, "train_limit": 300,
                           "test_limit": 100, "probe_images": 32}, "test")
    run = tmp_path / "run"
    with pytest.raises(Interrupted, match=r"signal 15 in epoch 2 after batch 2/9; the "
                                          r"checkpoint after epoch 1 is kept.*resume"):
        keras_run.train(config, str(run), verbose=0)
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-1.npz", "state.json"]
    assert not (run / "model.keras").exists()
    metrics = keras_run.train(None, str(run), resume=True, verbose=0)
    assert metrics["epochs"] == 3 and metrics["history"][0] == state["history"][0]
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-3.npz", "state.json"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone again


ROBUST_BITS = """
import json, sys
import numpy as np
from fmfp_tf.attacks import common, pgd
from fmfp_tf.evaluation.robustness import load_entry, test_images
bits = {}
for run in sys.argv[1:]:
    entry = load_entry(run)
    x, y, _, _ = test_images(entry, 300)
    x_adv = pgd(entry.model, x, y, eps=8 / 255, steps=10, restarts=1, seed=0)
    clean = common.predict_logits(entry.model, x).argmax(-1) == y
    robust = common.predict_logits(entry.model, x_adv).argmax(-1) == y
    bits[run] = {"clean": clean.tolist(), "robust": robust.tolist()}
print(json.dumps(bits))
"""


@pytest.mark.extended
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="run once, from the TensorFlow suite, against a JAX process")
def test_the_same_gtsrb_recipe_on_tensorflow_and_jax_is_as_robust_on_the_same_images(tmp_path):
    """`fmfp-tf train` with N-FGSM + EMA on a GTSRB subset, once on TensorFlow's loop and once
    through Keras's fit on JAX (their random streams differ), both float32; then the same PGD-10
    on the same 300 test images of the seeded sample attacks both models (on TensorFlow): the
    images on which they disagree are few and split both ways (McNemar at 5 %)."""
    pytest.importorskip("jax")
    pytest.importorskip("tensorflow")
    from tests.conftest import shared_dataset

    import numpy as np

    data_dir = str(shared_dataset("gtsrb"))
    recipe = ["train", "--dataset", "gtsrb", "--data-dir", data_dir, "--train-limit", "4000",
              "--test-limit", "600", "--defense", "nfgsm-at", "--weight-averaging", "ema",
              "--ema-decay", "0.99", "--epochs", "5", "--batch-size", "128", "--schedule",
              "one-cycle", "--learning-rate", "0.003", "--precision", "float32",
              "--probe-images", "0", "--quiet"]
    for backend in ("tensorflow", "jax"):
        done = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", *recipe, "--out",
                               str(tmp_path / backend)], capture_output=True, text=True,
                              timeout=900, env={**ENV, "KERAS_BACKEND": backend})
        assert done.returncode == 0, done.stderr[-3000:]
    measured = subprocess.run([sys.executable, "-c", ROBUST_BITS, str(tmp_path / "tensorflow"),
                               str(tmp_path / "jax")], capture_output=True, text=True,
                              timeout=900, env={**ENV, "KERAS_BACKEND": "tensorflow"})
    assert measured.returncode == 0, measured.stderr[-3000:]
    bits = json.loads(measured.stdout.strip().splitlines()[-1])
    tf_bits, jax_bits = (bits[str(tmp_path / b)] for b in ("tensorflow", "jax"))
    for kind in ("clean", "robust"):
        a, b = np.array(tf_bits[kind]), np.array(jax_bits[kind])
        only_tf, only_jax = int((a & ~b).sum()), int((b & ~a).sum())
        print(f"{kind}: TensorFlow {a.mean():.3f}, JAX {b.mean():.3f}, only TensorFlow "
              f"{only_tf}, only JAX {only_jax}")
        assert abs(only_tf - only_jax) <= max(6, 1.96 * np.sqrt(only_tf + only_jax)), (
            kind, a.mean(), b.mean(), only_tf, only_jax)
    # both learned (43 classes: chance is 2.3 %; 5 epochs of N-FGSM from scratch on 4,000
    # images reach about 25 % clean, 18 % under PGD-10 on both backends)
    assert np.mean(tf_bits["clean"]) > 0.15 and np.mean(jax_bits["clean"]) > 0.15
    assert np.mean(tf_bits["robust"]) > 0.08 and np.mean(jax_bits["robust"]) > 0.08
