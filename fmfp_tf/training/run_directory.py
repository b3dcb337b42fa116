"""What a training job does on every backend around its loop: the run directory's protocol
(one writer, `config.json` first, `--overwrite` staged and swapped in whole, a refused job leaves
nothing behind), the data split and the (defended) model of a config. No TensorFlow: the
TensorFlow job (`run.py`) and the `model.fit` job of the other backends (`keras_run.py`) share
it."""
import dataclasses
import logging
import os
import shutil
import typing

from fmfp_tf import atomic, data, models, runs
from fmfp_tf.config import TrainConfig
from fmfp_tf.defenses import defend
from fmfp_tf.errors import DataError, Interrupted, ModelError, UsageError

logger = logging.getLogger(__name__)


def load_split(config, split):
    limit = config.train_limit if split == "train" else config.test_limit
    return data.load_arrays(
        config.dataset, config.data_dir, split, config.image_size, config.on_bad_image,
        limit=limit, face_crop=config.face_crop_used,
    )


def build_model(config, input_shape, num_classes):
    """The (possibly defended) model of `config`, uncompiled."""
    model = models.build(config.model, input_shape, num_classes)
    if config.layer_defense:
        model = defend(model, config.layer_defense, config.layer_size, fill=config.fill,
                       seed=config.seed, test_time=config.test_time,
                       **(config.layer_options or {}))
    return model


# Frames of one GTSRB track differ by a few pixels of scale and light; probing several per
# held-out group averages over frames while the probe still spans count / 4 distinct signs.
PROBED_PER_GROUP = 4


def hold_out(arrays, count, seed, by="image"):
    """(training arrays without the held-out images, `count` probe images) for the robust probe.

    by="image": `count` seeded images. by="group": whole groups of near-copies (`Arrays.groups`,
    GTSRB's sign tracks) leave training, in seeded order, and PROBED_PER_GROUP seeded images of
    each go to the probe until it holds `count`; a probe of single images would be frames of
    tracks still trained on, and would read the training set's robustness, not the test set's."""
    if not count:
        return arrays, None
    if count >= len(arrays.labels) // 2:
        raise UsageError(f"probe_images = {count}: at most half of the {len(arrays.labels)} "
                         "training images can be held out")
    import numpy as np

    from fmfp_tf.data.images import Arrays

    rng = np.random.default_rng([seed, 104729])
    if by == "group":
        chosen, out = _held_out_groups(arrays, count, rng)
    elif by == "image":
        chosen = np.zeros(len(arrays.labels), bool)
        chosen[rng.choice(len(arrays.labels), count, replace=False)] = True
        out = chosen
    else:
        raise UsageError(f"probe_holdout = {by!r}; expected image or group")
    return (Arrays(arrays.images[~out], arrays.labels[~out], arrays.class_names,
                   arrays.skipped, None if arrays.groups is None else arrays.groups[~out]),
            Arrays(arrays.images[chosen], arrays.labels[chosen], arrays.class_names))


def _held_out_groups(arrays, count, rng):
    """(the probe's images, every held-out group's images) as masks."""
    import numpy as np

    if arrays.groups is None:
        raise UsageError("probe_holdout = group: this dataset's images have no groups (known for "
                         "gtsrb and belgium, from their track file names); use image")
    names, index = np.unique(arrays.groups, return_inverse=True)
    chosen = np.zeros(len(arrays.labels), bool)
    out = np.zeros(len(arrays.labels), bool)
    taken = removed = 0
    for group in rng.permutation(len(names)):
        if taken >= count:
            break
        members = np.flatnonzero(index == group)
        probed = rng.choice(members, min(PROBED_PER_GROUP, len(members), count - taken),
                            replace=False)
        chosen[probed] = True
        out[members] = True
        taken, removed = taken + len(probed), removed + len(members)
        if removed > len(arrays.labels) // 2:
            raise UsageError(f"probe_images = {count}: holding out whole groups for it would "
                             f"take more than half of the {len(arrays.labels)} training images "
                             f"({len(names)} groups); ask for fewer probe images")
    return chosen, out


def weights_digest(model):
    """sha256 of all weights, to compare models across workers, runs or backends."""
    import hashlib

    import keras
    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(weight.value), np.float32)
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """One training job, as the CLI, the library and `reproduce` ask for it: the config (the
    run's recorded one when resuming), the run directory, whether it continues or replaces a
    run there, where cw-at's undefended twin is (default: `out_dir/twin-undefended`) and the
    progress bar (1 shows Keras's). Build it with `build`, which checks it; `run.run_job(job)`
    trains it with TensorFlow's loop, `keras_run.run_job(job)` with Keras's `fit` (JAX,
    PyTorch)."""

    config: TrainConfig
    out_dir: str
    resume: bool = False
    overwrite: bool = False
    verbose: int = 1
    twin_dir: typing.Optional[str] = None

    @classmethod
    def build(cls, config, out_dir, resume=False, overwrite=False, verbose=1, twin_dir=None):
        if resume and overwrite:
            raise UsageError("resume and overwrite contradict each other: resume continues the "
                             "run in out_dir, overwrite starts it again")
        if not out_dir:
            raise UsageError("out_dir is empty; give the run directory")
        if resume:
            config = resumed_config(out_dir)
        elif not isinstance(config, TrainConfig):
            raise UsageError("train() needs a TrainConfig (see fmfp_tf.config.train_config)")
        return cls(config, os.fspath(out_dir), bool(resume), bool(overwrite), verbose, twin_dir)


def resumed_config(out_dir):
    """The config recorded in `out_dir`, refusing what there is nothing to resume from."""
    if not runs.is_started(out_dir):
        raise UsageError(f"{out_dir}: nothing to resume (no config.json)")
    checkpoints = os.path.join(out_dir, "checkpoints")
    if runs.is_complete(out_dir) and not (os.path.isdir(checkpoints) and os.listdir(
            checkpoints)):
        # resuming from nothing would train from scratch and replace the finished model
        raise UsageError(f"{out_dir}: a finished run without checkpoints; nothing to resume "
                         "(overwrite=True trains it again, the old run kept until the new "
                         "one completes)", {"overwrite=True": "overwrite"})
    return runs.read_config(out_dir)


def in_run_directory(config, out_dir, resume, overwrite, train_in):
    """Runs `train_in(work_dir, twin_dir) -> metrics` as the one writer of `out_dir`: the
    config written first, an existing run replaced only with `overwrite` and only once the new
    one is complete; a job refused before training began leaves no run directory behind."""
    created = _missing_ancestors(out_dir)
    try:
        return _locked(config, out_dir, resume, overwrite, train_in)
    except (DataError, ModelError, UsageError):
        # refused before training began (bad data, a bad setting): no run directory is left
        # behind holding only its config, nor the empty folders made for it
        if created and not os.path.isdir(os.path.join(out_dir, "checkpoints")):
            shutil.rmtree(out_dir, ignore_errors=True)
            for folder in created[1:]:
                if os.path.isdir(folder) and not os.listdir(folder):
                    os.rmdir(folder)
        raise


def _missing_ancestors(path):
    """`path` and its parents that do not exist yet, deepest first."""
    missing, path = [], os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _locked(config, out_dir, resume, overwrite, train_in):
    with runs.locked(out_dir):
        staged = None
        if not resume and runs.holds_run(out_dir):
            if not overwrite:
                raise UsageError(
                    f"{out_dir}: already holds a run; pass resume=True to continue it, "
                    "overwrite=True to start again (the old run stays whole until the new one "
                    "completes), or choose another out_dir",
                    {"resume=True": "resume", "overwrite=True": "overwrite",
                     "another out_dir": "out_dir"})
            staged, continued = runs.staging_dir(out_dir, config)
            if continued:
                logger.info("continuing the interrupted overwrite in %s", staged)
        work_dir = staged or out_dir
        if not resume:
            atomic.write_json(os.path.join(work_dir, "config.json"), config.to_dict())
        try:
            metrics = train_in(work_dir, os.path.join(work_dir, "twin-undefended")
                               if staged else None)
        except Interrupted as stopped:
            hint = ("the old run stays whole; the same command again (overwrite=True included) "
                    "continues the new one" if staged else "resume=True continues it")
            raise Interrupted(f"{stopped}; {hint}",
                              {"overwrite=True": "overwrite", "resume=True": "resume"}) from None
        if staged:
            runs.swap_in(out_dir, staged)
        return metrics
