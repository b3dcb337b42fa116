"""The training loop: one custom loop for every strategy, with checkpoints and resume.

Keras 3 `Model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the loop
calls `strategy.run` itself; the same code serves the default strategy, MirroredStrategy and
MultiWorkerMirroredStrategy. The batch size is global: each of N replicas gets batch_size / N
examples, and the loss is averaged over the global batch, so a step means the same thing
everywhere.
"""
import contextlib
import json
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from fmfp_tf import atomic, provenance
from fmfp_tf.stopping import StopFlag
from fmfp_tf.data.pipeline import make_dataset
from fmfp_tf.errors import (FmfpError, Interrupted, StorageError, UsageError,  # noqa: F401
                            is_storage_full, storage_full_reason)

logger = logging.getLogger(__name__)


def make_steps(model, optimizer, strategy, perturbation=None, averaging=None, augmentation=None):
    """Compiled distributed train and eval steps.

    `augmentation` (an `augmentation.Augmentation`), when given, transforms each batch first:
    the adversarial examples are crafted from, and the clean loss taken on, what it returns.
    `perturbation` (an `adversarial.Perturbation`), when given, crafts adversarial inputs for
    each batch; the loss is then clean_weight * clean loss + (1 - clean_weight) * adversarial
    loss, or the perturbation's own loss of the clean and adversarial logits. `averaging` (an
    `averaging.ExponentialAverage`) is updated after every step.
    """
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    clean_weight = perturbation.clean_weight if perturbation is not None else 0.0

    def replica_train(x, y):
        if augmentation is not None:
            x = augmentation(x)
        inputs = perturbation(x, y) if perturbation is not None else x
        with tf.GradientTape() as tape:
            # mixed precision computes the layers in bfloat16/float16; the loss stays float32
            logits = tf.cast(model(inputs, training=True), tf.float32)
            if perturbation is not None and perturbation.loss is not None:
                clean = tf.cast(model(x, training=True), tf.float32)
                per_example = perturbation.loss(y, clean, logits)
            else:  # cross-entropy on the crafted (or plain) inputs, the clean weight beside it
                per_example = loss_fn(y, logits)
                if perturbation is not None and clean_weight > 0:
                    clean = loss_fn(y, tf.cast(model(x, training=True), tf.float32))
                    per_example = clean_weight * clean + (1.0 - clean_weight) * per_example
            loss = tf.nn.compute_average_loss(per_example)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(
                    tf.add_n([tf.cast(term, tf.float32) for term in model.losses]))
            # float16's LossScaleOptimizer scales here and unscales in apply_gradients; other
            # optimizers return the loss unchanged
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return _totals(per_example, logits, y)

    def replica_eval(x, y):
        logits = tf.cast(model(x, training=False), tf.float32)
        return _totals(loss_fn(y, logits), logits, y)

    def distributed(fn, after=None):
        @tf.function
        def step(x, y):
            results = strategy.run(fn, args=(x, y))
            if after is not None:
                after()  # cross-replica context: every replica's weights are in sync here
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

        return step

    return (distributed(replica_train, averaging.update if averaging is not None else None),
            distributed(replica_eval))


def _totals(per_example_loss, logits, y):
    """(summed loss, correct predictions, examples) of one replica's batch."""
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                    tf.float32))
    return tf.reduce_sum(per_example_loss), correct, tf.cast(tf.shape(y)[0], tf.float32)


def _sharded(dataset):
    """Shard by example across workers: the arrays are in memory, there are no files to split."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def rng_state_variables(model):
    """The state of every Keras SeedGenerator in the model (FM/FP layers, dropout).

    Keras does not put these in `model.weights`, so checkpoints would otherwise restore the
    weights but replay different random masks and dropout after a resume.
    """
    states = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", None) or []:
            states.append(generator.state.value)
    return states


def evaluate_arrays(eval_step, strategy, images, labels, batch_size):
    """(mean loss, accuracy) over arrays with a compiled distributed eval step."""
    # inference keeps no activations for a backward pass, so large batches are cheap in memory
    # and cut the per-step overhead that dominates small models; the result does not depend on it
    batch_size = max(batch_size, 256 * strategy.num_replicas_in_sync)
    dataset = strategy.experimental_distribute_dataset(
        _sharded(make_dataset(images, labels, batch_size, shuffle=False))
    )
    totals = np.zeros(3)
    for x, y in dataset:
        totals += [float(v) for v in eval_step(x, y)]
    return totals[0] / max(totals[2], 1), totals[1] / max(totals[2], 1)


def evaluate_model(model, strategy, arrays, batch_size):
    """(mean loss, accuracy) of `model` on `arrays`, distributed as training was."""
    _, eval_step = make_steps(model, None, strategy)
    return evaluate_arrays(eval_step, strategy, arrays.images, arrays.labels, batch_size)


class _Checkpoints:
    """A run's checkpoints: weights, optimizer, position, RNG states (`CheckpointManager`, two
    kept), and `state.json` with the history and the running totals of a half-done epoch."""

    def __init__(self, model, optimizer, checkpoint_dir, write_files, perturbation, averaging,
                 augmentation=None):
        # position = (whole epochs done, batches done in the next epoch); the shuffle order
        # depends on (seed, epoch) only, so skipping the batches done resumes mid-epoch exactly
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch,
                                              step=self.step, rng=rng_state_variables(model))
        if perturbation is not None and perturbation.generator is not None:
            self.checkpoint.attack_rng = perturbation.generator  # random starts resume too
        if augmentation is not None:
            self.checkpoint.augment_rng = augmentation.generator  # and the augmentation's draws
        if averaging is not None:
            for name, value in averaging.trackables().items():
                setattr(self.checkpoint, name, value)
        self.directory = checkpoint_dir
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=2)
        self.state_path = os.path.join(checkpoint_dir, "state.json")
        self.write_files = write_files

    def restore(self):
        """(history, running totals of the half-done epoch) from the newest whole checkpoint."""
        history, partial = [], [0.0, 0.0, 0.0]
        if not self.manager.checkpoints:
            return history, partial
        restored = self._restore_newest_whole()
        # without its state the history of the epochs done would restart empty (and the run's
        # metadata be wrong); before the first whole epoch there is no history to lose (a kill
        # between the checkpoint and its state): only that epoch's running totals restart
        if int(self.epoch.numpy()) or os.path.exists(self.state_path):
            state = _read_state(self.state_path)
            history = state["history"][: int(self.epoch.numpy())]
            partial = state["partial"] if int(self.step.numpy()) else partial
        logger.info("resumed from %s: %d epoch(s) and %d batch(es) done", restored,
                    int(self.epoch.numpy()), int(self.step.numpy()))
        return history, partial

    def _restore_newest_whole(self):
        for path in reversed(self.manager.checkpoints):
            try:
                self.checkpoint.restore(path).expect_partial()
                return path
            except (tf.errors.OpError, ValueError, IndexError, OSError) as error:
                logger.warning("checkpoint %s is damaged (%s); trying the one before", path,
                               str(error).splitlines()[0][:200])
        raise UsageError(f"{self.directory}: no whole checkpoint to resume from (the last two "
                         "are damaged); start the run again with overwrite=True",
                         {"overwrite=True": "overwrite"})

    def save(self, number, history, totals):
        if not self.write_files:
            # under MultiWorkerMirroredStrategy every worker must take part in saving; only the
            # chief's files are kept, the others write to a throw-away directory
            scratch = os.path.join(self.directory + "-worker-scratch", str(os.getpid()))
            self.checkpoint.write(scratch)
            return
        try:
            self.manager.save(checkpoint_number=number)
            atomic.write_json(self.state_path, {"history": history, "partial": list(totals)})
        except (tf.errors.OpError, OSError) as error:
            if not is_storage_full(error):
                raise
            _remove_temporary_checkpoints(self.directory)
            raise StorageError(
                f"{self.directory}: cannot write checkpoint {number} "
                f"({storage_full_reason(error)}); free some space and continue with resume=True",
                {"resume=True": "resume"}) from None


def _remove_temporary_checkpoints(checkpoint_dir):
    """TensorFlow writes a checkpoint into `ckpt-N_temp/` and renames it when complete; a failed
    write leaves the folder behind."""
    import shutil

    for name in os.listdir(checkpoint_dir):
        if name.endswith("_temp"):
            shutil.rmtree(os.path.join(checkpoint_dir, name), ignore_errors=True)


def _epoch_line(record):
    """One epoch's numbers as a person reads them: losses and accuracies to 4 places, the
    seconds to 1, the memory in whole MB (not `seconds 13.5448, rss_mb 794.3000`)."""
    def shown(key, value):
        if key == "seconds":
            return f"{value:.1f} s"
        if key == "rss_mb":
            return f"{value:.0f} MB resident"
        return f"{key} {value:.4f}"

    return ", ".join(shown(key, value) for key, value in record.items() if key != "epoch")


def _read_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        if not isinstance(state.get("history"), list) or len(state.get("partial", ())) != 3:
            raise ValueError("missing history or partial totals")
        return state
    except FileNotFoundError:
        raise UsageError(f"{path}: missing training state; the checkpoints beside it cannot be "
                         "resumed without it: start the run again with overwrite=True",
                         {"overwrite=True": "overwrite"}) from None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise UsageError(f"{path}: damaged training state ({error}); the checkpoints cannot be "
                         "resumed without it: start the run again with overwrite=True",
                         {"overwrite=True": "overwrite"}) from None


def fit(model, optimizer, strategy, train, test, *, epochs, batch_size, seed, checkpoint_dir,
        write_files=True, perturbation=None, averaging=None, probe=None, log_dir=None, verbose=1,
        on_epoch_end=None, augmentation=None):
    """Trains `model` for `epochs`, resuming from `checkpoint_dir` if it holds a checkpoint, and
    returns the per-epoch history (a list of dicts: loss, accuracy, seconds, test_loss and
    test_accuracy when `test` is given, rss_mb).

    `train` and `test` are `Arrays` (uint8 images, labels). A checkpoint (weights, optimizer
    state, the defense layers' RNG state, the position and the history) is written after every
    epoch and when SIGTERM/SIGINT arrives, in which case `Interrupted` is raised after the
    checkpoint is written. `perturbation`: adversarial training's `adversarial.Perturbation`.
    `augmentation`: an `augmentation.Augmentation` applied to every batch first.
    `averaging`: an `averaging.ExponentialAverage`, updated every step; the epoch's test numbers
    are then the averaged model's (`test_accuracy_raw`: the raw weights'). `probe`: a
    `robustness_probe.RobustProbe` measuring robust accuracy after every epoch (on the model
    that would be saved). `verbose`: 1 shows Keras's progress bar; messages go to the `fmfp_tf`
    logger either way.
    """
    # the optimizer's slots must exist before the first distributed step: Keras 3 would create
    # them lazily inside a cross-replica cond, which MirroredStrategy cannot run
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    train_step, eval_step = make_steps(model, optimizer, strategy, perturbation, averaging,
                                       augmentation)
    checkpoints = _Checkpoints(model, optimizer, checkpoint_dir, write_files, perturbation,
                               averaging, augmentation)
    history, partial = checkpoints.restore()
    steps = int(np.ceil(len(train.labels) / batch_size))
    writer = tf.summary.create_file_writer(log_dir) if (log_dir and write_files) else None
    with StopFlag() as stop:
        for epoch in range(int(checkpoints.epoch.numpy()), epochs):
            done = int(checkpoints.step.numpy())
            logger.info("epoch %d/%d", epoch + 1, epochs)
            start = time.time()
            totals = _run_epoch(train_step, strategy, train, batch_size, seed, epoch, steps,
                                done, np.array(partial if done else [0.0, 0.0, 0.0]), verbose,
                                stop, checkpoints, history)
            record = {"epoch": epoch + 1, "loss": totals[0] / totals[2],
                      "accuracy": totals[1] / totals[2], "seconds": time.time() - start}
            if test is not None and averaging is not None:
                record["test_accuracy_raw"] = evaluate_arrays(
                    eval_step, strategy, test.images, test.labels, batch_size)[1]
            # the epoch's numbers are those of the model that would be saved: the average
            with averaging.swapped_in() if averaging is not None else contextlib.nullcontext():
                if test is not None:
                    record["test_loss"], record["test_accuracy"] = evaluate_arrays(
                        eval_step, strategy, test.images, test.labels, batch_size)
                if probe is not None:
                    record.update(probe.measure(model))
                    probe.observe(history + [record], model)
            # memory after each epoch: a leak shows as growth from epoch to epoch
            record["rss_mb"] = round(provenance.resident_memory_mb(), 1)
            history.append(record)
            checkpoints.epoch.assign(epoch + 1)
            checkpoints.step.assign(0)
            checkpoints.save((epoch + 1) * steps, history, totals)
            _write_summaries(writer, record)
            logger.info("  %s", _epoch_line(record))
            if on_epoch_end is not None:
                on_epoch_end(record)
            if stop.signal is not None and epoch + 1 < epochs:
                raise Interrupted(f"stopped by signal {stop.signal} after epoch {epoch + 1}; "
                                  "checkpoint written")
    return history


def _run_epoch(train_step, strategy, train, batch_size, seed, epoch, steps, done, totals,
               verbose, stop, checkpoints, history):
    """The batches of one epoch from batch `done` on; returns the (loss, correct, count)
    totals. On SIGTERM/SIGINT: writes a mid-epoch checkpoint and raises `Interrupted`."""
    progbar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["loss", "acc"])
    data = make_dataset(train.images, train.labels, batch_size, shuffle=True, seed=seed,
                        epoch=epoch)
    dataset = strategy.experimental_distribute_dataset(
        _sharded(data.skip(done) if done else data))
    for step, (x, y) in enumerate(dataset, start=done + 1):
        totals += [float(v) for v in train_step(x, y)]
        progbar.update(step, [("loss", totals[0] / totals[2]), ("acc", totals[1] / totals[2])])
        if stop.signal is not None and step < steps:
            checkpoints.step.assign(step)
            checkpoints.save(epoch * steps + step, history, totals)
            raise Interrupted(f"stopped by signal {stop.signal} in epoch {epoch + 1} after batch "
                              f"{step}/{steps}; checkpoint written")
    return totals


def _write_summaries(writer, record):
    """The epoch's numbers for TensorBoard."""
    if writer is None:
        return
    with writer.as_default(step=record["epoch"]):
        for key, value in record.items():
            if key != "epoch":
                tf.summary.scalar(key, value)
    writer.flush()
