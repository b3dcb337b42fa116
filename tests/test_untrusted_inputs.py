"""Results that must never be silently wrong, and inputs that must never run code or write through
a link: the cache keyed on everything the loader reads, data files confined to their folder, locks
that refuse links, SavedModels refused without opt-in, one label per model."""
import os

import numpy as np
import pytest

from fmfp_tf import atomic, data, runs
from fmfp_tf.errors import DataError, ModelError, UsageError
from tests.test_data import gtsrb_fixture

HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"


def test_a_changed_label_file_invalidates_the_cache_and_a_damaged_entry_is_rebuilt(
        tmp_path, monkeypatch):
    monkeypatch.setenv("FMFP_TF_CACHE", str(tmp_path / "cache"))
    gtsrb_fixture(str(tmp_path / "d"))
    first = data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
    csv_path = tmp_path / "d" / "GTSRB" / "Final_Training" / "Images" / "00000" / "GT-00000.csv"
    # the same images, one label changed in the index
    csv_path.write_text(csv_path.read_text().replace("00000_00000.ppm;99;99;1;1;20;20;0",
                                                     "00000_00000.ppm;99;99;1;1;20;20;7"))
    second = data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
    assert sorted(first.labels.tolist()) == [0, 0, 5, 5, 42, 42]
    assert sorted(second.labels.tolist()) == [0, 5, 5, 7, 42, 42]
    np.testing.assert_array_equal(np.sort(first.images, axis=0), np.sort(second.images, axis=0))
    # a truncated entry and an empty one are rebuilt, with the right labels
    for damage in (lambda p: p.write_bytes(p.read_bytes()[:100]), lambda p: p.write_bytes(b"")):
        for entry in (tmp_path / "cache").iterdir():
            damage(entry)
        again = data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
        assert sorted(again.labels.tolist()) == [0, 5, 5, 7, 42, 42]


@pytest.mark.parametrize("filename", ["/etc/hostname", "../00005/00000_00000.ppm", "link.ppm"])
def test_an_index_naming_a_file_outside_its_folder_is_refused(tmp_path, monkeypatch, filename):
    monkeypatch.setenv("FMFP_TF_CACHE", "off")
    gtsrb_fixture(str(tmp_path))
    folder = tmp_path / "GTSRB" / "Final_Training" / "Images" / "00000"
    outside = tmp_path / "secret.ppm"
    outside.write_bytes((folder / "00000_00000.ppm").read_bytes())
    os.symlink(outside, folder / "link.ppm")
    (folder / "GT-00000.csv").write_text(f"{HEADER}\n{filename};1;1;0;0;1;1;0\n")
    with pytest.raises(DataError, match="outside the data folder"):
        data.load_arrays("gtsrb", str(tmp_path), "train")


def test_locks_never_write_through_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.symlink(victim, run_dir / runs.LOCK_NAME)
    with pytest.raises(UsageError, match="symbolic link"):
        with runs.locked(str(run_dir)):
            pass
    target = tmp_path / "extracted"
    os.symlink(victim, atomic.sibling_lock_path(str(target)))
    with pytest.raises(UsageError, match="symbolic link"):
        with atomic.file_lock(atomic.sibling_lock_path(str(target)), str(target), "extract target"):
            pass
    assert victim.read_text() == "precious"
    # an ordinary lock still works, and writes the holder's pid
    with runs.locked(str(tmp_path / "fresh")):
        assert (tmp_path / "fresh" / runs.LOCK_NAME).read_text() == str(os.getpid())
    # released, the lock file is gone: a finished run holds no .lock
    assert not (tmp_path / "fresh" / runs.LOCK_NAME).exists()


def test_a_lock_taken_on_a_file_its_holder_removed_is_taken_again(tmp_path):
    # a second process may open the lock file just before its holder removes it on release;
    # its flock then succeeds on a file no longer at the path, which must not count
    import fcntl

    lock = tmp_path / ".lock"
    stale = atomic._open_lock_file(str(lock), "x")
    fcntl.flock(stale.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert atomic._names(str(lock), stale)
    os.unlink(lock)
    assert not atomic._names(str(lock), stale)
    stale.close()
    with atomic.file_lock(str(lock), "x", "test"):
        assert lock.read_text() == str(os.getpid())
        fresh = atomic._open_lock_file(str(lock), "x")
        with pytest.raises(OSError):  # held: a third process is refused
            fcntl.flock(fresh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fresh.close()
    assert not lock.exists()


def test_a_savedmodel_is_code_and_is_refused_without_opt_in(tmp_path):
    import tensorflow as tf

    from fmfp_tf.models_io import load_model

    marker = tmp_path / "written-by-the-model"

    class Crafted(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 4, 4, 3), tf.float32)])
        def logits(self, images):
            tf.io.write_file(str(marker), "pwned")  # what any graph op could do
            return tf.reduce_mean(images, axis=(1, 2))

    path = str(tmp_path / "saved")
    tf.saved_model.save(Crafted(), path)
    with pytest.raises(ModelError, match="refused to load a SavedModel.*unsafe=True"):
        load_model(path)
    assert not marker.exists()
    model = load_model(path, unsafe=True)  # the user's explicit choice
    model(np.zeros((1, 4, 4, 3), np.float32))
    assert marker.exists()
    from fmfp_tf.cli import errors

    assert errors.as_flag("unsafe", "unsafe=True") == "--unsafe-load"
    assert errors.as_flag("dataset", "dataset=NAME") == "--dataset NAME"
    assert errors.as_flag("out_dir", "another out_dir") == "another --out"
    # only the texts an error declares are rewritten: a path that looks like one stays
    from fmfp_tf.errors import UsageError

    error = UsageError("/data/name=x/resume=True: pass resume=True", {"pass resume=True": "resume"})
    assert error.spelled(errors.as_flag) == "/data/name=x/resume=True: pass --resume"
    # damaged ones, even when trusted, get one line
    import shutil

    data_file = next((tmp_path / "saved" / "variables").glob("variables.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:8])
    with pytest.raises(ModelError, match="damaged or incomplete"):
        load_model(path, unsafe=True)
    shutil.rmtree(tmp_path / "saved" / "variables")
    with pytest.raises(ModelError, match="damaged or incomplete"):
        load_model(path, unsafe=True)


def two_runs_named_run(tmp_path):
    import keras

    paths = []
    for parent in ("A", "B"):
        model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(43)])
        os.makedirs(tmp_path / parent / "run")
        model.save(tmp_path / parent / "run" / "model.keras")
        paths.append(str(tmp_path / parent / "run"))
    return paths


def test_two_models_whose_folders_share_a_name_get_distinct_labels(tmp_path):
    from fmfp_tf.evaluation.robustness import evaluate, load_entry, unique_names

    paths = two_runs_named_run(tmp_path)
    entries = [load_entry(path) for path in paths]
    assert [e.name for e in entries] == ["run", "run"]  # what the folders alone would give
    records = evaluate(entries, ["fgsm"], n=8, dataset="synthetic", log=lambda message: None)
    assert {r["model"] for r in records} == {os.path.join("A", "run"), os.path.join("B", "run")}
    assert len(records) == 2 * len({r["attack"] for r in records})
    with pytest.raises(UsageError, match="the same model is given twice"):
        unique_names([load_entry(paths[0]), load_entry(paths[0])])
    # issue 41: the same model as its run folder and its model.keras, or through a link
    os.symlink(paths[0], tmp_path / "alias")
    for other in (os.path.join(paths[0], "model.keras"), str(tmp_path / "alias")):
        with pytest.raises(UsageError, match="the same model is given twice"):
            unique_names([load_entry(paths[0]), load_entry(other)])


def test_a_missing_transfer_twin_stops_the_evaluation_before_any_attack(tmp_path):
    from fmfp_tf.evaluation.robustness import evaluate, load_entry

    entries = [load_entry(path) for path in two_runs_named_run(tmp_path)]
    seen = []
    with pytest.raises(ModelError, match="no undefended twin"):
        evaluate(entries, ["fgsm"], threats=("white-box", "transfer"), n=8, dataset="synthetic",
                 log=seen.append)
    assert seen == []  # not one attack ran (before: every white-box attack of every model)


def test_a_fifo_where_an_image_or_an_archive_should_be_is_named_not_waited_on(tmp_path):
    """Opening a FIFO blocks until something writes to it: a loader would hang. Refused by
    name, as a folder in its place is."""
    import os

    import pytest

    from fmfp_tf.data.archives import extract
    from fmfp_tf.data.images import read_image
    from fmfp_tf.errors import DataError

    os.mkfifo(tmp_path / "image.png")
    os.mkfifo(tmp_path / "data.zip")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(DataError, match=r"image.png: is a pipe \(FIFO\), not a regular image file"):
        read_image(str(tmp_path / "image.png"), (8, 8))
    with pytest.raises(DataError, match="folder.png: is a folder, not an image file"):
        read_image(str(tmp_path / "folder.png"), (8, 8))
    with pytest.raises(DataError, match=r"data.zip: is a pipe \(FIFO\), not a regular archive file"):
        extract(str(tmp_path / "data.zip"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_archives_naming_one_path_twice_are_refused_before_anything_is_written(tmp_path):
    import warnings
    import zipfile

    import pytest

    from fmfp_tf.data.archives import extract
    from fmfp_tf.errors import DataError

    twice = tmp_path / "twice.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(twice, "w") as handle:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it writes
        handle.writestr("data/a.csv", "first")
        handle.writestr("data/a.csv", "second")
    file_and_folder = tmp_path / "both.zip"
    with zipfile.ZipFile(file_and_folder, "w") as handle:
        handle.writestr("a", "a file")
        handle.writestr(zipfile.ZipInfo("a/"), "")
    with pytest.raises(DataError, match="'data/a.csv' appears twice"):
        extract(str(twice), str(tmp_path / "one"))
    with pytest.raises(DataError, match="'a' is both a file and a folder member"):
        extract(str(file_and_folder), str(tmp_path / "two"))
    assert not (tmp_path / "one").exists() and not (tmp_path / "two").exists()
