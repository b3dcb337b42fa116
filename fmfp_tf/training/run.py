"""`train(config, out_dir)`: data, model, defense, training loop and the run directory's files.

A run directory holds:
- `config.json`: the resolved config (written first; `resume` reads it),
- `checkpoints/`: the latest checkpoints and the history so far,
- `logs/`: TensorBoard summaries,
- `model.keras`, `metrics.json`, `history.png`: written atomically when training ends;
  `metrics.json` present means the run is complete,
- `.lock`: held by the process writing the run (see `fmfp_tf.runs`); `--overwrite` trains in
  `.overwrite/` and swaps the new run in only once it is complete.
"""
import contextlib
import dataclasses
import logging
import os
import time

import keras
import tensorflow as tf

from fmfp_tf import atomic, plots, provenance, runs, sizes
from fmfp_tf.training import adversarial, precision, robustness_probe, schedules, strategies
from fmfp_tf.training import augmentation as augmentation_lib
from fmfp_tf.training import averaging as averaging_lib
from fmfp_tf.training.loop import evaluate_model, fit
from fmfp_tf.training.run_directory import (TrainingJob, build_model, hold_out,  # noqa: F401
                                            in_run_directory, load_split, resumed_config,
                                            weights_digest)

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def deterministic(seed):
    """Seeds Keras, NumPy and Python and turns on TensorFlow's deterministic ops for the block
    only: the run is reproducible, and the caller's process gets its own setting back after."""
    # TensorFlow's public API can turn determinism on but not off again
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    keras.utils.set_random_seed(seed)
    tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if not before:
            tf_config.disable_op_determinism()


def train_unless_complete(config, out_dir, verbose=1, twin_dir=None):
    """The metrics of the run in `out_dir`: read back when it is complete, else trained from
    `config`, or resumed when an interrupted run is there (its recorded config is used)."""
    if runs.is_complete(out_dir):
        return runs.read_metrics(out_dir)
    resume = runs.is_started(out_dir)
    return train(None if resume else config, out_dir, resume=resume, verbose=verbose,
                 twin_dir=twin_dir)


def train_cached(config, cache_dir, verbose=0, twin_dir=None):
    """`(run_dir, metrics)` of `config` in a model cache (`runs.cache_entry`): read back when
    complete, resumed when started, trained otherwise; a cached run whose own config trains
    another model is refused."""
    run_dir = runs.cache_entry(config, cache_dir)
    runs.check_cache_entry(config, run_dir)
    return run_dir, train_unless_complete(config, run_dir, verbose=verbose, twin_dir=twin_dir)


def train(config, out_dir, resume=False, overwrite=False, verbose=1, twin_dir=None):
    """Trains the model described by `config` into `out_dir`; returns the metrics dict.

    With `resume`, the config stored in `out_dir` is used and training continues from the last
    checkpoint. `twin_dir`: for cw-at, where the undefended twin is (or is to be) trained; by
    default `out_dir/twin-undefended`. `verbose`: 1 shows a progress bar; messages go to the
    `fmfp_tf` logger. (`TrainingJob.build(...)` and `run_job` are the same in two steps.)
    """
    return run_job(TrainingJob.build(config, out_dir, resume, overwrite, verbose, twin_dir))


def run_job(job):
    """Runs a `TrainingJob` with TensorFlow's loop; returns the metrics dict."""
    strategy = strategies.get_strategy(job.config.strategy)
    if not strategies.is_chief(strategy):
        # workers other than the chief write nothing that lasts in the run directory
        return _train_in(job, strategy, chief=False)
    return in_run_directory(
        job.config, job.out_dir, job.resume, job.overwrite,
        lambda work_dir, staged_twin: _train_in(
            dataclasses.replace(job, out_dir=work_dir, twin_dir=job.twin_dir or staged_twin),
            strategy, chief=True))


def _train_in(job, strategy, chief):
    """Trains into `job.out_dir` (the run directory, or its staging directory on
    --overwrite)."""
    with deterministic(job.config.seed):
        return _train_seeded(job, strategy, chief)


def _train_seeded(job, strategy, chief):
    config, out_dir = job.config, job.out_dir
    started = time.time()
    train_arrays, test_arrays = _load_data(config, out_dir, job.verbose, job.twin_dir)
    train_arrays, held_out = hold_out(train_arrays, config.probe_size, config.seed,
                                      config.probe_holdout)
    input_shape = tuple(train_arrays.images.shape[1:])
    num_classes = len(train_arrays.class_names)
    used = precision.resolve(config.precision)
    with strategy.scope(), precision.policy(used):
        model = build_model(config, input_shape, num_classes)
        steps_per_epoch = -(-len(train_arrays.labels) // config.batch_size)
        optimizer = precision.optimizer_for(schedules.optimizer(config, steps_per_epoch), used)
        perturbation = adversarial.perturbation(config, model)
        augmentation = augmentation_lib.build(config)
        averaging = (averaging_lib.ExponentialAverage(model, config.ema_decay)
                     if config.weight_averaging == "ema" else None)
    checkpoint_dir = os.path.join(out_dir, "checkpoints")
    probe = None
    if held_out is not None:
        probe = robustness_probe.RobustProbe(
            held_out.images.astype("float32") / 255.0, held_out.labels,
            config.at_eps if config.adversarial_training else 8 / 255, checkpoint_dir,
            write_files=chief, seed=config.seed)
    logger.info("model %s (%s parameters), defense %s%s, %s, strategy %s with %d replica(s)",
                config.model, f"{model.count_params():,}", config.defense,
                f" size {sizes.describe(config.size, min(input_shape[:2]))}"
                if config.layer_defense else "", used, strategies.name_of(strategy),
                strategy.num_replicas_in_sync)
    history = fit(
        model, optimizer, strategy, train_arrays, test_arrays,
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
        checkpoint_dir=checkpoint_dir, write_files=chief, perturbation=perturbation,
        averaging=averaging, probe=probe, log_dir=os.path.join(out_dir, "logs"),
        verbose=job.verbose, augmentation=augmentation,
    )

    def rebuild():
        # what is saved, evaluated and served computes in float32 (see training.precision)
        return build_model(config, input_shape, num_classes)

    raw_model = None
    selection = probe.selection(history, config.overfit_guard == "restore") if probe else None
    if averaging is not None:
        raw_model = precision.float32_copy(model, rebuild)
        averaging.copy_to_model()
    if selection and selection["restored"]:
        logger.warning("restoring epoch %d, the best under PGD on the probe (collapse in epoch(s) "
                       "%s)", selection["best_epoch"], selection["collapsed_epochs"])
        model.load_weights(probe.best_path)
    if used != "float32" or raw_model is not None:
        model = precision.float32_copy(model, rebuild)
    metrics = _metrics(config, model, strategy, history, train_arrays, test_arrays, started,
                       used)
    if averaging is not None:
        metrics["weight_averaging"] = {"method": "ema", "decay": config.ema_decay,
                                       "raw_model": "model-raw.keras"}
    if selection is not None:
        metrics["robust_selection"] = selection
    if chief:
        _write_outputs(out_dir, model, history, metrics, config.run_name(), raw_model)
    return metrics


def _load_data(config, out_dir, verbose, twin_dir):
    """(train, test) Arrays; for cw-at the training set carries the twin's C&W examples."""
    train_arrays = load_split(config, "train")
    test_arrays = load_split(config, "test")
    skipped = len(train_arrays.skipped) + len(test_arrays.skipped)
    logger.info("%s: %d train / %d test images of %s, %d classes%s", config.dataset,
                len(train_arrays.labels), len(test_arrays.labels),
                tuple(train_arrays.images.shape[1:]), len(train_arrays.class_names),
                f"; skipped {skipped} bad images" if skipped else "")
    if config.adversarial_training == "cw":
        twin = _trained_twin(config, twin_dir or os.path.join(out_dir, "twin-undefended"),
                             verbose)
        train_arrays = adversarial.cw_augmented(config, train_arrays, twin)
    return train_arrays, test_arrays


def _trained_twin(config, twin_dir, verbose):
    """The undefended twin's model (cw-at crafts on it), trained or resumed when needed."""
    from fmfp_tf.models_io import load_model

    if not runs.is_complete(twin_dir):
        logger.info("cw-at: training the undefended twin into %s", twin_dir)
    train_unless_complete(config.undefended_twin(), twin_dir, verbose=verbose)
    return load_model(os.path.join(twin_dir, "model.keras"))


def _metrics(config, model, strategy, history, train_arrays, test_arrays, started, used):
    """metrics.json: the result, the full config and where and how it was obtained."""
    # the saved model (float32; averaged, or the best epoch's after a collapse) is what is
    # evaluated and served: its own accuracy counts, not the last epoch's record
    test_loss, test_accuracy = evaluate_model(model, tf.distribute.get_strategy(), test_arrays,
                                              config.batch_size)
    return {
        "run": config.run_name(),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_accuracy": history[-1]["accuracy"],
        "epochs": len(history),
        "history": history,
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "size": config.size,
        "size_pixels": config.size_pixels,
        "seed": config.seed,
        "dataset": {
            "name": config.dataset,
            "train_examples": int(len(train_arrays.labels)),
            "test_examples": int(len(test_arrays.labels)),
            "image_shape": list(train_arrays.images.shape[1:]),
            "num_classes": len(train_arrays.class_names),
            "class_names": train_arrays.class_names,
            "face_crop": config.face_crop_used,
            "skipped_images": train_arrays.skipped + test_arrays.skipped,
        },
        "model": {"name": config.model, "parameters": int(model.count_params())},
        "strategy": {"requested": config.strategy, "used": strategies.name_of(strategy),
                     "class": type(strategy).__name__,
                     "replicas": int(strategy.num_replicas_in_sync)},
        "precision": {"requested": config.precision, "used": used},
        "weights_sha256": weights_digest(model),
        "wall_seconds": time.time() - started,
        "versions": provenance.versions(),
        "machine": provenance.machine(),
    }


def _write_outputs(out_dir, model, history, metrics, title, raw_model=None):
    """model.keras (and model-raw.keras under weight averaging), history.png, then
    metrics.json: its presence marks the run complete."""
    with atomic.atomic_path(os.path.join(out_dir, "model.keras")) as tmp:
        model.save(tmp)
    if raw_model is not None:
        with atomic.atomic_path(os.path.join(out_dir, "model-raw.keras")) as tmp:
            raw_model.save(tmp)
    plots.history_plot(history, os.path.join(out_dir, "history.png"), title)
    atomic.write_json(os.path.join(out_dir, "metrics.json"), metrics)
