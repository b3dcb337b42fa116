"""A run directory: what it holds, and its guard rails (one writer at a time, an --overwrite that
loses nothing).

- `read_config(run_dir)`: the run's `TrainConfig` (one-line errors for a missing or damaged
  config.json); `is_started` / `is_complete(run_dir)`: config.json, or metrics.json and
  model.keras, are there; `read_metrics`;
  `find_twin(run_dir)`: the undefended twin among its siblings, matched by config fingerprint
  with only the defense changed; `cache_entry(config, cache_dir)`: where a model cache (the
  reproduction's, the benchmarks') keeps the run of a config, `check_cache_entry` that a
  cached run was trained with it.

- `locked(run_dir)`: an advisory lock (`fcntl.flock` on `RUN/.lock`, which the kernel releases
  when the holder dies, so a crash never leaves a stale lock). A second writer gets a one-line
  error naming the holder's pid. `file_lock` does the same for targets that must not exist
  until complete (extracted datasets lock `.NAME.lock` beside them).
- `Overwrite`: a new run replacing a finished one is trained in `RUN/.overwrite/`; only once it is
  complete are the old files moved aside (`RUN/.previous/`), the new ones moved in and the old
  ones deleted. A failure, a kill or Ctrl-C before that leaves the old run whole; the next writer
  cleans up what a kill left.
"""
import contextlib
import json
import os
import shutil

from fmfp_tf import atomic
from fmfp_tf.errors import UsageError

LOCK_NAME = ".lock"
STAGING = ".overwrite"
PREVIOUS = ".previous"
# the files and folders a run consists of (what an overwrite replaces)
RUN_ENTRIES = ("config.json", "checkpoints", "logs", "metrics.json", "model.keras",
               "model-raw.keras", "history.png", "twin-undefended")


@contextlib.contextmanager
def locked(run_dir, what="run directory"):
    """Holds an exclusive lock on `run_dir` for the block; UsageError if another process has it.

    On entry, what a killed writer left in the directory is cleaned up (`recover`).
    """
    os.makedirs(run_dir, exist_ok=True)
    with atomic.file_lock(os.path.join(run_dir, LOCK_NAME), run_dir, what):
        recover(run_dir)
        yield


def read_config(run_dir):
    """The TrainConfig recorded in `run_dir/config.json`."""
    from fmfp_tf.config import train_config

    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise UsageError(f"{run_dir}: not a run directory (no config.json)")
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path}: unreadable run config ({error}); the run directory is damaged "
                         "and its settings are lost: train it again with overwrite=True",
                         {"overwrite=True": "overwrite"}) from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a JSON object of config keys")
    # before sizes carried units, config.json wrote a bare number of pixels
    return train_config(values, path, bare_size="pixels")


def moved_data_dir(run_dir, recorded):
    """Where a run's recorded data directory, gone from this machine, now stands beside the run:
    the recorded path's last components (at least the dataset folder and its parent, longest
    first) under each folder that holds the run. A run committed with its data beside the
    checkout (`../shared/data/gtsrb`) so evaluates on any clone; None when nothing matches."""
    parts = [part for part in os.path.normpath(recorded).split(os.sep) if part]
    folder = os.path.dirname(os.path.realpath(run_dir))
    holders = []
    while True:
        holders.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for length in range(min(len(parts), 4), 1, -1):
        tail = os.path.join(*parts[-length:])
        for holder in holders:
            candidate = os.path.join(holder, tail)
            if os.path.isdir(candidate):
                return candidate
    return None


def is_complete(run_dir):
    """A finished run: its metrics and its model are both there (both are written last)."""
    return all(os.path.isfile(os.path.join(run_dir, name))
               for name in ("metrics.json", "model.keras"))


def is_started(run_dir):
    """A run was begun here (its config.json is written first): `resume` can continue it."""
    return os.path.isfile(os.path.join(run_dir, "config.json"))


def read_metrics(run_dir):
    """The metrics.json of a complete run."""
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as handle:
        return json.load(handle)


def find_twin(run_dir):
    """The complete undefended twin of the run in `run_dir` among its sibling directories (the
    same config, fingerprint for fingerprint, with only the defense's settings reset), or None.

    A twin trained for other epochs, on another subset or with another learning rate is not a
    twin: transfer from it would measure the difference in training, not the defense.
    """
    wanted = read_config(run_dir).undefended_twin().fingerprint()
    parent = os.path.dirname(os.path.abspath(run_dir))
    for name in sorted(os.listdir(parent)):
        candidate = os.path.join(parent, name)
        if os.path.abspath(candidate) == os.path.abspath(run_dir) or not is_complete(candidate):
            continue
        try:
            if read_config(candidate).fingerprint() == wanted:
                return candidate
        except UsageError:
            continue  # a damaged sibling is not a twin
    return None


def cache_entry(config, cache_dir):
    """`cache_dir/<run name>-<fingerprint>`: one directory per model a cache can hold, shared by
    every tool that trains into the same cache (reproduce, benchmarks)."""
    return os.path.join(cache_dir, f"{config.run_name()}-{config.fingerprint()}")


def check_cache_entry(config, run_dir):
    """Refuses a cached run whose own config trains another model than `config` (a directory
    copied in by hand, or a cache written before the fingerprint's rules changed)."""
    if is_started(run_dir) and read_config(run_dir).fingerprint() != config.fingerprint():
        raise UsageError(f"{run_dir}: its config.json trains another model than the name says "
                         "(fingerprint differs); remove the directory to train it again")


def holds_run(run_dir):
    return any(os.path.exists(os.path.join(run_dir, name))
               for name in ("metrics.json", "checkpoints"))


def recover(run_dir):
    """Undoes what a kill left (called under the lock): a half-done swap is rolled back or
    finished, an abandoned staging directory removed."""
    previous = os.path.join(run_dir, PREVIOUS)
    staging = os.path.join(run_dir, STAGING)
    for path in (previous, staging):
        if os.path.islink(path):  # never ours (we make directories): drop the link, not its target
            os.remove(path)
    if os.path.isdir(previous):
        if os.path.isfile(os.path.join(run_dir, "metrics.json")) and not os.path.isdir(staging):
            shutil.rmtree(previous)  # the new run was fully moved in: the old one can go
        else:
            # killed while moving: put the old run back
            for name in os.listdir(previous):
                target = os.path.join(run_dir, name)
                _remove(target)
                os.replace(os.path.join(previous, name), target)
            os.rmdir(previous)
    if os.path.isdir(staging) and not os.path.isfile(os.path.join(staging, "config.json")):
        shutil.rmtree(staging)  # nothing to continue; a staged run with its config is kept
    # temporary files of atomic writes (.model.keras.*.tmp.keras, ...) and TensorFlow's half-written
    # checkpoints (ckpt-N_temp/) that a kill or a full disk left behind
    for folder in (run_dir, os.path.join(run_dir, "checkpoints")):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if (name.startswith(".") and ".tmp" in name) or name.endswith("_temp"):
                _remove(os.path.join(folder, name))


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def staging_dir(run_dir, config=None):
    """(where an overwriting run is trained until it completes, whether it continues an
    interrupted one): a staged run whose config has `config`'s fingerprint is kept, so the same
    command again continues it; any other is replaced."""
    path = os.path.join(run_dir, STAGING)
    if config is not None and os.path.isfile(os.path.join(path, "config.json")):
        try:
            if read_config(path).fingerprint() == config.fingerprint():
                return path, True
        except UsageError:
            pass  # a damaged staged config: start the new run again
    _remove(path)
    os.makedirs(path)
    return path, False


def swap_in(run_dir, staged):
    """Replaces the run in `run_dir` by the complete run in `staged` (both under the lock)."""
    previous = os.path.join(run_dir, PREVIOUS)
    _remove(previous)
    os.makedirs(previous)
    for name in RUN_ENTRIES:
        if os.path.lexists(os.path.join(run_dir, name)):
            os.replace(os.path.join(run_dir, name), os.path.join(previous, name))
    for name in os.listdir(staged):
        os.replace(os.path.join(staged, name), os.path.join(run_dir, name))
    os.rmdir(staged)
    shutil.rmtree(previous)
