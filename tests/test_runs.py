"""Run directories: locks, overwrite swaps and what a kill leaves behind (fmfp_tf.runs)."""
import multiprocessing
import os

import pytest

from fmfp_tf import runs
from fmfp_tf.errors import UsageError


def _hold(run_dir, ready, release):
    with runs.locked(run_dir):
        ready.set()
        release.wait(30)


def test_lock_names_the_holder_and_is_released_when_it_ends(tmp_path):
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(UsageError, match=f"in use by process {holder.pid}"):
            with runs.locked(str(tmp_path)):
                pass
    finally:
        release.set()
        holder.join(30)
    with runs.locked(str(tmp_path)):
        pass


def test_recover_rolls_back_a_half_done_swap_and_cleans_leftovers(tmp_path):
    run = tmp_path
    (run / ".previous").mkdir()
    (run / ".previous" / "metrics.json").write_text("old")
    (run / ".previous" / "model.keras").write_text("old model")
    (run / ".overwrite").mkdir()
    (run / "metrics.json").write_text("new, half moved")
    (run / ".model.keras.abc123.tmp.keras").write_text("partial")
    (run / "checkpoints" / "ckpt-7_temp").mkdir(parents=True)
    runs.recover(str(run))
    assert (run / "metrics.json").read_text() == "old"
    assert (run / "model.keras").read_text() == "old model"
    assert sorted(os.listdir(run)) == ["checkpoints", "metrics.json", "model.keras"]
    assert os.listdir(run / "checkpoints") == []


def test_swap_in_replaces_the_run_whole(tmp_path):
    (tmp_path / "metrics.json").write_text("old")
    (tmp_path / "logs").mkdir()
    staged = runs.staging_dir(str(tmp_path))
    with open(os.path.join(staged, "metrics.json"), "w") as handle:
        handle.write("new")
    runs.swap_in(str(tmp_path), staged)
    assert (tmp_path / "metrics.json").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]
