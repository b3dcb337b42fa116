"""`train(config, out_dir)` on JAX and PyTorch: the same job as the TensorFlow one (`run.py`),
with Keras's own `model.fit` as the loop and `AdversarialModel` for the online
adversarial-training methods, so `KERAS_BACKEND=jax fmfp-tf train` trains on the device machine.

The run directory is the same (`run_directory`): config.json first, one writer, `--overwrite`
staged, model.keras / metrics.json / history.png at the end. What differs from the TensorFlow job,
said where it happens: checkpoints are taken after every epoch (the weights, the optimizer's
variables with its weight average, the random draws' states, the history, in one file that
state.json names once whole), so a stopped run resumes at its last finished epoch (SIGTERM or
SIGINT stop `fit` at the next batch's end and drop the epoch under way); the batches (order and
augmentation) depend on the run's seed and the epoch alone (`batches.SeededBatches`), so a resumed
run trains as an uninterrupted one would, bit for bit on JAX's CPU; it trains in float32 or
bfloat16 (`precision` auto: bfloat16 on a GPU of compute capability 8.0 or more; the saved model is
float32, as on TensorFlow; float16, which needs loss scaling, is the TensorFlow loop's); one device
(`strategy` auto or default); cw-at, which crafts C&W examples on a twin with TensorFlow's loop, is
TensorFlow's. Weight averaging is the optimizer's `use_ema`; the robust probe is
`keras_fit.RobustProbe` on the held-out images.
"""
import json
import logging
import os
import time

import keras
import numpy as np

from fmfp_tf import atomic, defense_registry, plots, provenance, stopping
from fmfp_tf.errors import Interrupted, UsageError
from fmfp_tf.training import batches, precision, schedules
from fmfp_tf.training.keras_fit import AdversarialModel, RobustProbe, beta_key, methods
from fmfp_tf.training.run_directory import (TrainingJob, build_model, hold_out,
                                            in_run_directory, load_split, weights_digest)

logger = logging.getLogger(__name__)


def check(config):
    """The settings this route cannot honour, refused in one line before anything is read."""
    backend = keras.backend.backend()
    if config.adversarial_training == "cw":
        raise UsageError(f"defense {config.defense!r}: cw-at crafts its C&W examples with the "
                         f"TensorFlow loop; on Keras's {backend} backend use an online method "
                         "(fgsm-at, pgd-at, fast-at, nfgsm-at, trades-at) or "
                         "KERAS_BACKEND=tensorflow")
    method = config.adversarial_training
    if method not in (None, "cw") and method not in methods():
        raise UsageError(f"defense {config.defense!r}: {method}-at crafts its examples with "
                         f"TensorFlow only (its registry entry gives no keras_examples); on "
                         f"Keras's {backend} backend the fit route knows "
                         f"{', '.join(m + '-at' for m in methods())}; or train it with "
                         "KERAS_BACKEND=tensorflow")
    batches.augmentation(config)  # an augmentation with no fit-route function is refused
    if config.strategy not in ("auto", "default"):
        raise UsageError(f"strategy = {config.strategy!r} is tf.distribute's; on Keras's "
                         f"{backend} backend training runs on one device (strategy auto)")
    if config.precision == "float16":
        raise UsageError(f"precision = 'float16' needs loss scaling, which TensorFlow's loop "
                         f"does; on Keras's {backend} backend use bfloat16 (same exponent "
                         "range as float32, no scaling), float32 or auto")


def train(config, out_dir, resume=False, overwrite=False, verbose=1):
    """Trains `config` into `out_dir` with `model.fit`; returns the metrics dict (`run.train`'s
    keys). `resume` continues from the last finished epoch."""
    return run_job(TrainingJob.build(config, out_dir, resume, overwrite, verbose))


def run_job(job):
    """Runs a `TrainingJob` through Keras's `fit`; returns the metrics dict."""
    if job.twin_dir is not None:
        raise UsageError("twin_dir is cw-at's, which Keras's fit route refuses")
    check(job.config)
    return in_run_directory(job.config, job.out_dir, job.resume, job.overwrite,
                            lambda work_dir, _: _train_in(job.config, work_dir, job.verbose))


def _images(arrays):
    return arrays.images.astype(np.float32) / 255.0, np.asarray(arrays.labels, np.int32)


def _train_in(config, out_dir, verbose):
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    train_arrays, held_out = hold_out(load_split(config, "train"), config.probe_size,
                                      config.seed, config.probe_holdout)
    test_arrays = load_split(config, "test")
    x, y = _images(train_arrays)
    x_test, y_test = _images(test_arrays)
    num_classes = len(train_arrays.class_names)
    used = precision.resolve(config.precision)
    with precision.policy(used):  # the layers compute in it; the weights stay float32
        model = build_model(config, x.shape[1:], num_classes)
    trained = model
    if config.adversarial_training:
        # the keys this method reads, by their fit names; the others stay at the fit defaults
        unread = set(config.unread_settings())
        given = {"steps": ("at_steps", config.at_steps),
                 "step_size": ("at_step_size", config.at_step_size or 0.0),
                 "clean_weight": ("at_clean_fraction", -1.0 if config.at_clean_fraction is None
                                  else config.at_clean_fraction)}
        beta = beta_key(defense_registry.ADVERSARIAL_TRAINING[config.adversarial_training])
        if beta is not None:  # trades_beta, mart_beta: the KL weight of the method's own loss
            given["beta"] = (beta, getattr(config, beta))
        trained = AdversarialModel(
            model, method=config.adversarial_training, eps=config.at_eps, seed=config.seed,
            **{name: value for name, (key, value) in given.items() if key not in unread})
    steps_per_epoch = -(-len(y) // config.batch_size)
    optimizer = schedules.optimizer(config, steps_per_epoch)
    if config.weight_averaging == "ema":
        # Keras's own average: kept beside each weight, put in place when fit ends
        optimizer.use_ema, optimizer.ema_momentum = True, config.ema_decay
    trained.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    checkpoints = _Checkpoint(os.path.join(out_dir, "checkpoints"), model, optimizer,
                              _draw_states(trained, model))
    done, history = checkpoints.restore(trained)
    callbacks = [checkpoints]
    probe = None
    if held_out is not None:
        probe_x, probe_y = _images(held_out)
        probe = RobustProbe(probe_x, probe_y, eps=config.at_eps if config.adversarial_training
                            else 8 / 255, model=model, seed=config.seed)
        checkpoints.watch(probe)
        callbacks.insert(0, probe)
    logger.info("model %s (%s parameters), defense %s, %s, Keras's %s backend, model.fit",
                config.model, f"{model.count_params():,}", config.defense, used,
                keras.backend.backend())
    if done < config.epochs:
        training_batches = batches.SeededBatches(x, y, config.batch_size, config.seed, done,
                                                 batches.augmentation(config))
        # shuffle=False: the batches shuffle themselves from the seed; fit's own shuffle would
        # reorder them with Python's global generator, which a resumed process does not continue
        with stopping.StopFlag() as stop:
            trained.fit(training_batches, epochs=config.epochs, initial_epoch=done,
                        validation_data=(x_test, y_test),
                        callbacks=[_StopOnSignal(stop, len(training_batches)), *callbacks],
                        verbose=verbose, shuffle=False)
    elif config.weight_averaging == "ema":
        # every epoch was done before a stop: fit, which puts the average in place, is not run
        optimizer.finalize_variable_values(model.trainable_variables)
    history = checkpoints.history
    if used != "float32":
        # what is saved, evaluated and served computes in float32 (see training.precision)
        model = precision.float32_copy(model, lambda: build_model(config, x.shape[1:],
                                                                   num_classes))
    test_loss, test_accuracy = _evaluate(model, x_test, y_test, config.batch_size)
    metrics = {
        "run": config.run_name(), "test_accuracy": test_accuracy, "test_loss": test_loss,
        "train_accuracy": history[-1]["accuracy"] if history else None,
        "epochs": len(history), "history": history, "config": config.to_dict(),
        "fingerprint": config.fingerprint(), "size": config.size,
        "size_pixels": config.size_pixels, "seed": config.seed,
        "dataset": {"name": config.dataset, "train_examples": int(len(y)),
                    "test_examples": int(len(y_test)), "image_shape": list(x.shape[1:]),
                    "num_classes": num_classes, "class_names": train_arrays.class_names,
                    "face_crop": config.face_crop_used,
                    "skipped_images": train_arrays.skipped + test_arrays.skipped},
        "model": {"name": config.model, "parameters": int(model.count_params())},
        "strategy": {"requested": config.strategy, "used": "default", "class": "model.fit",
                     "replicas": 1},
        "precision": {"requested": config.precision, "used": used},
        "backend": keras.backend.backend(),
        "weights_sha256": weights_digest(model),
        "wall_seconds": time.time() - started,
        "versions": provenance.versions(), "machine": provenance.machine(),
    }
    if config.weight_averaging == "ema":
        metrics["weight_averaging"] = {"method": "ema", "decay": config.ema_decay}
    if probe is not None:
        metrics["robust_probe"] = {"history": probe.history, "best": probe.best}
    with atomic.atomic_path(os.path.join(out_dir, "model.keras")) as tmp:
        model.save(tmp)
    plots.history_plot(history, os.path.join(out_dir, "history.png"), config.run_name())
    atomic.write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


def _evaluate(model, x, y, batch_size):
    """(loss, accuracy) of the saved model (the averaged weights under EMA) on the test set."""
    from fmfp_tf.attacks.common import predict_logits

    logits = predict_logits(model, x, batch_size)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    loss = float(-log_probs[np.arange(len(y)), y].mean())
    return loss, float((logits.argmax(-1) == y).mean())


def _draw_states(trained, model):
    """The random-draw states of the model (its dropout's and defense layers' seed generators)
    and of the wrapper around it (AdversarialModel's): variables outside the model's weights,
    yet a resumed run must continue them to draw what an uninterrupted one would."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in trained.variables if id(variable) not in weights]


class _Checkpoint(keras.callbacks.Callback):
    """After every epoch: the model's weights, the optimizer's variables (its step, moments and
    weight average), the wrapper's random-draw states, the probe's best weights and the history;
    `restore` puts them back. The arrays go into one file per epoch (epoch-N.npz) and state.json
    names it once it is whole, so a process killed at any point leaves a checkpoint whose parts
    all belong to the epoch it names (separate files could mix two epochs)."""

    def __init__(self, folder, model, optimizer, draws=()):
        super().__init__()
        self.folder, self.inner, self.optimizer = folder, model, optimizer
        self.draws = list(draws)
        self.history, self.began = [], None
        self.probe, self.probe_best = None, None  # the guard's best epoch, kept across a stop
        self.probe_weights = None

    def watch(self, probe):
        """Keeps `probe`'s best weights with every checkpoint and gives them back on resume,
        so a collapse after a stop is still measured against, and restored to, the best epoch
        before it."""
        self.probe = probe
        probe.history = [record["probe_robust_accuracy"] for record in self.history
                         if "probe_robust_accuracy" in record]
        if self.probe_best is not None:
            probe.best_weights, probe.best = self.probe_weights, self.probe_best

    def restore(self, trained):
        """(epochs done, history) from the folder, the weights and optimizer put back."""
        state = os.path.join(self.folder, "state.json")
        if not os.path.isfile(state):
            return 0, []
        with open(state, encoding="utf-8") as handle:
            saved = json.load(handle)
        arrays = self._read(saved)
        self.inner.set_weights(arrays["w"])
        for variable, value in zip(self.draws, arrays["d"]):  # none in an older checkpoint
            variable.assign(value)
        self.optimizer.build(trained.trainable_variables)
        if len(arrays["v"]) != len(self.optimizer.variables):
            raise UsageError(f"{self.folder}: the checkpoint holds {len(arrays['v'])} "
                             f"optimizer variables, this run's optimizer "
                             f"{len(self.optimizer.variables)}; train it again with "
                             "overwrite=True", {"overwrite=True": "overwrite"})
        for variable, value in zip(self.optimizer.variables, arrays["v"]):
            variable.assign(value)
        self.history = saved["history"]
        self.probe_best = saved.get("probe_best")
        self.probe_weights = arrays["p"] or None
        logger.info("resuming after epoch %d of the checkpoint in %s", saved["epoch"],
                    self.folder)
        return saved["epoch"], self.history

    def _read(self, saved):
        """{"w", "v", "d", "p"}: lists of arrays, from the file the state names (or, for a
        checkpoint written before there was one file, from the four files of that layout)."""
        if "file" in saved:
            with np.load(os.path.join(self.folder, saved["file"])) as kept:
                return {prefix: [kept[f"{prefix}{i}"] for i in
                                 range(sum(name.startswith(prefix) for name in kept.files))]
                        for prefix in "wvdp"}
        arrays = {}
        for prefix, name in (("w", "weights"), ("v", "optimizer"), ("d", "draws"),
                             ("p", "probe-best")):
            path = os.path.join(self.folder, f"{name}.npz")
            if prefix in "dp" and not os.path.isfile(path):
                arrays[prefix] = []
                continue
            with np.load(path) as kept:
                key = "w" if prefix == "p" else prefix
                arrays[prefix] = [kept[f"{key}{i}"] for i in range(len(kept.files))]
        return arrays

    def on_epoch_begin(self, epoch, logs=None):
        self.began = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        record = {"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)),
                  "accuracy": float(logs.get("accuracy", np.nan))}
        if "val_loss" in logs:
            record.update(test_loss=float(logs["val_loss"]),
                          test_accuracy=float(logs["val_accuracy"]))
        if "probe_robust_accuracy" in logs:
            record["probe_robust_accuracy"] = float(logs["probe_robust_accuracy"])
        record["seconds"] = round(time.time() - self.began, 1)
        self.history.append(record)
        os.makedirs(self.folder, exist_ok=True)
        arrays = {f"w{i}": w for i, w in enumerate(self.inner.get_weights())}
        arrays.update({f"v{i}": keras.ops.convert_to_numpy(v.value)
                       for i, v in enumerate(self.optimizer.variables)})
        arrays.update({f"d{i}": keras.ops.convert_to_numpy(v.value)
                       for i, v in enumerate(self.draws)})
        probe = self.probe
        if probe is not None and probe.best_weights is not None:
            self.probe_best = probe.best
            arrays.update({f"p{i}": w for i, w in enumerate(probe.best_weights)})
        name = f"epoch-{epoch + 1}.npz"
        with atomic.atomic_path(os.path.join(self.folder, name), suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        # the state last: it names the file only once the file is whole
        state = {"epoch": epoch + 1, "file": name, "history": self.history}
        if self.probe_best is not None:
            state["probe_best"] = self.probe_best
        atomic.write_json(os.path.join(self.folder, "state.json"), state)
        for old in os.listdir(self.folder):  # earlier epochs', and the older layout's files
            if old != name and (old.startswith("epoch-") or old in _OLD_LAYOUT):
                os.remove(os.path.join(self.folder, old))


_OLD_LAYOUT = ("weights.npz", "optimizer.npz", "draws.npz", "probe-best.npz")


class _StopOnSignal(keras.callbacks.Callback):
    """SIGTERM / SIGINT (heard by `stopping.StopFlag`) stop `fit` at the next batch's end: the
    epoch under way is dropped, since this route checkpoints per epoch, and `Interrupted` says
    which checkpoint is kept. Raised from the callback, so no partial epoch is ever recorded."""

    def __init__(self, stop, steps):
        super().__init__()
        self.stop, self.steps, self.epoch = stop, steps, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.stop.signal is not None:
            raise Interrupted(f"stopped by signal {self.stop.signal} after epoch {epoch}; "
                              "checkpoint written")

    def on_train_batch_end(self, batch, logs=None):
        if self.stop.signal is not None:
            raise Interrupted(f"stopped by signal {self.stop.signal} in epoch {self.epoch + 1} "
                              f"after batch {batch + 1}/{self.steps}; the checkpoint after "
                              f"epoch {self.epoch} is kept (this route checkpoints per epoch)")
