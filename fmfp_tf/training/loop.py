"""The training loop: one custom loop for every strategy, with checkpoints and resume.

Keras 3 `Model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the loop
calls `strategy.run` itself; the same code serves the default strategy, MirroredStrategy and
MultiWorkerMirroredStrategy. The batch size is global: each of N replicas gets batch_size / N
examples, and the loss is averaged over the global batch, so a step means the same thing
everywhere.
"""
import json
import os
import signal
import time

import keras
import numpy as np
import tensorflow as tf

from fmfp_tf import atomic, provenance
from fmfp_tf.data.pipeline import make_dataset
from fmfp_tf.errors import StorageError, UsageError, is_storage_full, storage_full_reason


class Interrupted(Exception):
    """Training stopped by SIGTERM/SIGINT after writing a checkpoint."""


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag checked between steps, so a checkpoint can be written."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def make_steps(model, optimizer, strategy, perturb=None, clean_weight=0.0):
    """Compiled distributed train and eval steps.

    `perturb(x, y)`, when given, returns adversarial inputs (adversarial training); the loss is
    then clean_weight * clean loss + (1 - clean_weight) * adversarial loss.
    """
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def replica_train(x, y):
        inputs = perturb(x, y) if perturb is not None else x
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            per_example = loss_fn(y, logits)
            if perturb is not None and clean_weight > 0:
                clean = loss_fn(y, model(x, training=True))
                per_example = clean_weight * clean + (1.0 - clean_weight) * per_example
            loss = tf.nn.compute_average_loss(per_example)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                        tf.float32))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.shape(y)[0], tf.float32)

    def replica_eval(x, y):
        logits = model(x, training=False)
        per_example = loss_fn(y, logits)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                        tf.float32))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.shape(y)[0], tf.float32)

    def distributed(fn):
        @tf.function
        def step(x, y):
            results = strategy.run(fn, args=(x, y))
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

        return step

    return distributed(replica_train), distributed(replica_eval)


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


def weights_digest(model):
    """sha256 of all weights, to compare models across workers or runs."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.numpy(), np.float32)).tobytes())
    return digest.hexdigest()


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


def _restore(checkpoint, manager, checkpoint_dir, verbose):
    """Restores the newest whole checkpoint (the manager keeps two); returns its path."""
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).expect_partial()
            return path
        except (tf.errors.OpError, ValueError, IndexError, OSError) as error:
            if verbose:
                print(f"checkpoint {path} is damaged ({str(error).splitlines()[0][:200]}); "
                      "trying the one before")
    raise UsageError(f"{checkpoint_dir}: no whole checkpoint to resume from (the last two are "
                     "damaged); start the run again with --overwrite")


def _remove_temporary_checkpoints(checkpoint_dir):
    """TensorFlow writes a checkpoint into `ckpt-N_temp/` and renames it when complete; a failed
    write leaves the folder behind."""
    import shutil

    for name in os.listdir(checkpoint_dir):
        if name.endswith("_temp"):
            shutil.rmtree(os.path.join(checkpoint_dir, name), ignore_errors=True)


def _read_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        if not isinstance(state.get("history"), list) or len(state.get("partial", ())) != 3:
            raise ValueError("missing history or partial totals")
        return state
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise UsageError(f"{path}: damaged training state ({error}); the checkpoints cannot be "
                         "resumed without it: start the run again with --overwrite") from None


def fit(model, optimizer, strategy, train, test, *, epochs, batch_size, seed, checkpoint_dir,
        write_files=True, perturb=None, clean_weight=0.0, log_dir=None, verbose=1,
        on_epoch_end=None):
    """Trains `model` for `epochs`, resuming from `checkpoint_dir` if it holds a checkpoint.

    `train` and `test` are `Arrays` (uint8 images, labels). Returns the per-epoch history (a list of
    dicts). A checkpoint (weights, optimizer state, the defense layers' RNG state, the epoch and
    the history) is written after every epoch and when SIGTERM/SIGINT arrives, in which case
    `Interrupted` is raised after the checkpoint is written.
    """
    # the optimizer's slots must exist before the first distributed step: Keras 3 would create
    # them lazily inside a cross-replica cond, which MirroredStrategy cannot run
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    train_step, eval_step = make_steps(model, optimizer, strategy, perturb, clean_weight)
    # position = (whole epochs done, batches done in the next epoch); the shuffle order depends
    # on (seed, epoch) only, so skipping the batches done resumes mid-epoch exactly
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var,
                                     step=step_var, rng=rng_state_variables(model))
    if getattr(perturb, "generator", None) is not None:
        checkpoint.attack_rng = perturb.generator  # PGD-AT's random starts resume too
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    state_path = os.path.join(checkpoint_dir, "state.json")
    history, partial = [], [0.0, 0.0, 0.0]
    if manager.checkpoints:
        restored = _restore(checkpoint, manager, checkpoint_dir, verbose)
        if os.path.exists(state_path):
            state = _read_state(state_path)
            history = state["history"][: int(epoch_var.numpy())]
            partial = state["partial"] if int(step_var.numpy()) else partial
        if verbose:
            print(f"resumed from {restored}: {int(epoch_var.numpy())} epoch(s) "
                  f"and {int(step_var.numpy())} batch(es) done")

    steps = int(np.ceil(len(train.labels) / batch_size))

    def save_checkpoint(totals):
        number = int(epoch_var.numpy()) * steps + int(step_var.numpy())
        if write_files:
            try:
                manager.save(checkpoint_number=number)
                atomic.write_json(state_path, {"history": history, "partial": list(totals)})
            except (tf.errors.OpError, OSError) as error:
                if not is_storage_full(error):
                    raise
                _remove_temporary_checkpoints(checkpoint_dir)
                raise StorageError(
                    f"{checkpoint_dir}: cannot write checkpoint {number} "
                    f"({storage_full_reason(error)}); free some space and continue with --resume"
                ) from None
        else:
            # under MultiWorkerMirroredStrategy every worker must take part in saving; only the
            # chief's files are kept, the others write to a throw-away directory
            scratch = os.path.join(checkpoint_dir + "-worker-scratch", str(os.getpid()))
            checkpoint.write(scratch)

    writer = tf.summary.create_file_writer(log_dir) if (log_dir and write_files) else None
    with _StopFlag() as stop:
        for epoch in range(int(epoch_var.numpy()), epochs):
            done = int(step_var.numpy())
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            progbar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["loss", "acc"])
            data = make_dataset(train.images, train.labels, batch_size, shuffle=True, seed=seed,
                                epoch=epoch)
            dataset = strategy.experimental_distribute_dataset(
                _sharded(data.skip(done) if done else data))
            start = time.time()
            totals = np.array(partial if done else [0.0, 0.0, 0.0])
            for step, (x, y) in enumerate(dataset, start=done + 1):
                totals += [float(v) for v in train_step(x, y)]
                progbar.update(step, [("loss", totals[0] / totals[2]), ("acc", totals[1] / totals[2])])
                if stop.signal is not None and step < steps:
                    step_var.assign(step)
                    save_checkpoint(totals)
                    raise Interrupted(
                        f"stopped by signal {stop.signal} in epoch {epoch + 1} after batch "
                        f"{step}/{steps}; checkpoint written, resume to continue"
                    )
            seconds = time.time() - start
            record = {"epoch": epoch + 1, "loss": totals[0] / totals[2],
                      "accuracy": totals[1] / totals[2], "seconds": seconds}
            if test is not None:
                record["test_loss"], record["test_accuracy"] = evaluate_arrays(
                    eval_step, strategy, test.images, test.labels, batch_size)
            # memory after each epoch: a leak shows as growth from epoch to epoch
            record["rss_mb"] = round(provenance.resident_memory_mb(), 1)
            history.append(record)
            epoch_var.assign(epoch + 1)
            step_var.assign(0)
            save_checkpoint(totals)
            if writer is not None:
                with writer.as_default(step=epoch + 1):
                    for key, value in record.items():
                        if key != "epoch":
                            tf.summary.scalar(key, value)
                writer.flush()
            if verbose:
                print("  " + ", ".join(
                    f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch",)))
            if on_epoch_end is not None:
                on_epoch_end(record)
            if stop.signal is not None and epoch + 1 < epochs:
                raise Interrupted(
                    f"stopped by signal {stop.signal} after epoch {epoch + 1}; checkpoint written, "
                    "resume to continue"
                )
    return history, eval_step
