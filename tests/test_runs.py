"""Run directories: locks, overwrite swaps and what a kill leaves behind (fmfp_tf.runs)."""
import json
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


def test_recover_drops_links_planted_as_staging_or_previous_and_keeps_their_targets(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(elsewhere, run / ".overwrite")
    os.symlink(elsewhere, run / ".previous")
    runs.recover(str(run))
    assert os.listdir(run) == [] and (elsewhere / "precious.txt").read_text() == "keep"


def test_swap_in_replaces_the_run_whole(tmp_path):
    (tmp_path / "metrics.json").write_text("old")
    (tmp_path / "logs").mkdir()
    staged, continued = runs.staging_dir(str(tmp_path))
    assert not continued
    with open(os.path.join(staged, "metrics.json"), "w") as handle:
        handle.write("new")
    runs.swap_in(str(tmp_path), staged)
    assert (tmp_path / "metrics.json").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


def _fake_run(directory, complete=True, **values):
    import json

    from fmfp_tf.config import TrainConfig

    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(TrainConfig(**values).to_dict()))
    if complete:
        (directory / "metrics.json").write_text("{}")
        (directory / "model.keras").write_text("")
    return str(directory)


def test_the_twin_is_the_same_config_with_only_the_defense_reset(tmp_path):
    defended = _fake_run(tmp_path / "a-mask", defense="mask", size="20%", fill="mean",
                         test_time=True, epochs=5, seed=3)
    # look-alikes that are not twins: other epochs, another seed, another learning rate,
    # a twin still training
    _fake_run(tmp_path / "b-other-epochs", epochs=3, seed=3)
    _fake_run(tmp_path / "c-other-seed", epochs=5, seed=4)
    _fake_run(tmp_path / "d-other-lr", epochs=5, seed=3, learning_rate=0.01)
    _fake_run(tmp_path / "e-unfinished", complete=False, epochs=5, seed=3)
    assert runs.find_twin(defended) is None
    twin = _fake_run(tmp_path / "f-twin", epochs=5, seed=3)
    assert runs.find_twin(defended) == twin
    assert runs.read_config(twin).fingerprint() == runs.read_config(
        defended).undefended_twin().fingerprint()


def test_cache_entry_is_shared_by_equal_configs_and_checked_against_its_config(tmp_path):
    import json

    from fmfp_tf.config import TrainConfig

    table = TrainConfig(epochs=3, cw_at_fraction=0.1)  # an undefended run never reads cw_at_*
    benchmark = TrainConfig(epochs=3)
    entry = runs.cache_entry(table, str(tmp_path))
    assert entry == runs.cache_entry(benchmark, str(tmp_path))
    assert os.path.basename(entry).startswith("synthetic-dnn1-none-s0-")
    os.makedirs(entry)
    with open(os.path.join(entry, "config.json"), "w") as handle:
        json.dump(benchmark.to_dict(), handle)
    runs.check_cache_entry(table, entry)
    with open(os.path.join(entry, "config.json"), "w") as handle:
        json.dump(TrainConfig(epochs=4).to_dict(), handle)
    with pytest.raises(UsageError, match="trains another model than the name says"):
        runs.check_cache_entry(table, entry)


def test_an_interrupted_overwrite_is_kept_for_the_same_settings_only(tmp_path):
    from fmfp_tf.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("old")
    config = TrainConfig(epochs=5)
    staged, continued = runs.staging_dir(str(run), config)
    assert not continued
    with open(os.path.join(staged, "config.json"), "w") as handle:
        json.dump(config.to_dict(), handle)
    (run / ".overwrite" / "checkpoints").mkdir()
    runs.recover(str(run))  # what the next lock does: a staged run with its config stays
    assert (run / ".overwrite" / "checkpoints").is_dir()
    assert runs.staging_dir(str(run), TrainConfig(epochs=5)) == (staged, True)
    assert (run / ".overwrite" / "checkpoints").is_dir()
    # other settings: the staged run is replaced by an empty one
    assert runs.staging_dir(str(run), TrainConfig(epochs=6)) == (staged, False)
    assert os.listdir(staged) == []


def test_a_run_trained_elsewhere_finds_its_data_beside_it(tmp_path):
    # the committed model records the path of the machine it was trained on; a clone with the
    # data beside the checkout (../shared/data/gtsrb) evaluates it without --data-dir (a
    # folder name of its own here: this machine may hold /tmp/shared)
    import json
    import shutil

    from fmfp_tf.evaluation.robustness import load_entry

    committed = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "models",
                             "gtsrb-dnn3-nfgsm-ema")
    run = tmp_path / "clone" / "benchmarks" / "models" / "m"
    run.mkdir(parents=True)
    shutil.copy(os.path.join(committed, "model.keras"), run)
    with open(os.path.join(committed, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    config["data_dir"] = "/a/machine/that/is/gone/shared-elsewhere/data/gtsrb"
    (run / "config.json").write_text(json.dumps(config))
    assert runs.moved_data_dir(str(run), config["data_dir"]) is None
    assert load_entry(str(run)).data_dir == config["data_dir"]  # nothing beside: unchanged
    data = tmp_path / "shared-elsewhere" / "data" / "gtsrb"
    data.mkdir(parents=True)
    entry = load_entry(str(run))
    assert entry.data_dir == str(data)
    assert entry.data_dir_recorded == config["data_dir"]
    # a folder that only shares the dataset's name is not taken for it
    shutil.rmtree(tmp_path / "shared-elsewhere")
    (tmp_path / "gtsrb").mkdir()
    assert runs.moved_data_dir(str(run), config["data_dir"]) is None
