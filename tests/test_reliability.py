"""Crashes, restarts and determinism of `fmfp-tf train`."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
RUN = ["--epochs", "3", "--train-limit", "1290", "--test-limit", "200", "--defense", "mask",
       "--size", "8", "--quiet"]


def command(*args):
    return [sys.executable, "-m", "fmfp_tf_cli_start", *args]


def wait_for_epochs(run_dir, epochs, process, timeout=300):
    state = os.path.join(run_dir, "checkpoints", "state.json")
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        if os.path.exists(state):
            with open(state) as handle:
                if len(json.load(handle)["history"]) >= epochs:
                    return
        time.sleep(0.2)
    raise AssertionError("training did not reach the epoch in time")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "straight"
    result = subprocess.run(command("train", *RUN, "--out", str(out)), capture_output=True,
                            text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.extended
def test_sigkill_mid_epoch_then_resume_completes_consistently(tmp_path, uninterrupted):
    out = tmp_path / "killed"
    process = subprocess.Popen(command("train", *RUN, "--out", str(out)), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(str(out), 1, process)
    time.sleep(1.0)  # inside epoch 2
    process.kill()
    process.wait()
    assert not (out / "metrics.json").exists() and not (out / "model.keras").exists()
    resumed = subprocess.run(command("train", "--resume", "--out", str(out), "--quiet"),
                             capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3]
    assert metrics["epochs"] == 3 and (out / "model.keras").exists()
    # same seed, same data order per epoch, restored RNG: the result matches a straight run
    assert abs(metrics["test_accuracy"] - uninterrupted["test_accuracy"]) <= 0.005
    assert abs(metrics["history"][-1]["loss"] - uninterrupted["history"][-1]["loss"]) < 1e-3


@pytest.mark.extended
def test_sigterm_writes_a_mid_epoch_checkpoint_and_resume_finishes(tmp_path, uninterrupted):
    out = tmp_path / "terminated"
    process = subprocess.Popen(command("train", *RUN, "--out", str(out)), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(str(out), 1, process)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "checkpoint written" in stderr and "Traceback" not in stderr
    with open(out / "checkpoints" / "state.json") as handle:
        state = json.load(handle)
    assert state["partial"][2] > 0  # examples of the interrupted epoch are recorded
    resumed = subprocess.run(command("train", "--resume", "--out", str(out), "--quiet"),
                             capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3]
    assert abs(metrics["test_accuracy"] - uninterrupted["test_accuracy"]) <= 0.005


@pytest.mark.extended
def test_same_seed_gives_identical_metrics(tmp_path, uninterrupted):
    out = tmp_path / "again"
    result = subprocess.run(command("train", *RUN, "--out", str(out)), capture_output=True,
                            text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == uninterrupted["test_accuracy"]
    assert [r["loss"] for r in metrics["history"]] == [
        r["loss"] for r in uninterrupted["history"]]


def test_existing_run_is_not_overwritten_without_flag(tmp_path):
    out = tmp_path / "r"
    (out / "checkpoints").mkdir(parents=True)
    result = subprocess.run(command("train", "--epochs", "1", "--out", str(out)),
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2 and "--resume" in result.stderr


TINY = ["--epochs", "2", "--train-limit", "430", "--test-limit", "100", "--quiet"]


@pytest.mark.extended
def test_a_failed_or_killed_overwrite_leaves_the_old_run_whole(tmp_path):
    out = tmp_path / "run"
    first = subprocess.run(command("train", *TINY, "--out", str(out)), capture_output=True,
                           text=True, env=ENV, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {name: (out / name).read_bytes() for name in ("metrics.json", "model.keras",
                                                           "config.json")}
    # the new run fails on its data: the old run is untouched
    failed = subprocess.run(command("train", *TINY, "--dataset", "gtsrb", "--data-dir",
                                    str(tmp_path / "typo"), "--overwrite", "--out", str(out)),
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert {name: (out / name).read_bytes() for name in before} == before
    # the new run is killed mid-way: the old run is untouched, and the next writer cleans up
    process = subprocess.Popen(command("train", "--epochs", "5", "--train-limit", "430",
                                       "--quiet", "--overwrite", "--out", str(out)),
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    staging = out / ".overwrite" / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while not staging.exists() and time.time() < deadline:
        assert process.poll() is None
        time.sleep(0.2)
    process.kill()
    process.wait()
    assert {name: (out / name).read_bytes() for name in before} == before
    # the same command again continues the new run from its checkpoint, then swaps it in
    again = subprocess.run(command("train", "--epochs", "5", "--train-limit", "430",
                                   "--overwrite", "--out", str(out)),
                           capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing the interrupted overwrite" in again.stderr
    assert "resumed from" in again.stderr
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 5
    assert not (out / ".overwrite").exists() and not (out / ".previous").exists()


@pytest.mark.extended
def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "busy"
    # far more epochs than the test waits for: under load a short run could finish, and release
    # its lock, before the second writer starts
    first = subprocess.Popen(command("train", "--epochs", "1000", "--train-limit", "430",
                                     "--quiet", "--out", str(out)),
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_epochs(str(out), 1, first)
        second = subprocess.run(command("train", "--resume", "--out", str(out), "--quiet"),
                                capture_output=True, text=True, env=ENV, timeout=300)
        assert second.returncode == 2
        assert f"in use by process {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()
    # a killed holder releases the lock: another writer takes the directory
    again = subprocess.run(command("train", "--overwrite", "--epochs", "1", "--train-limit",
                                   "430", "--quiet", "--out", str(out)),
                           capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.extended
def test_damaged_state_gets_one_line_and_a_damaged_checkpoint_falls_back(tmp_path):
    out = tmp_path / "damaged"
    process = subprocess.Popen(command("train", "--epochs", "4", "--train-limit", "430",
                                       "--test-limit", "100", "--quiet", "--out", str(out)),
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(str(out), 2, process)
    process.kill()
    process.wait()
    state = out / "checkpoints" / "state.json"
    good_state = state.read_text()
    state.write_text(good_state[:40])
    result = subprocess.run(command("train", "--resume", "--out", str(out), "--quiet"),
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "state.json: damaged training state" in result.stderr
    # a missing state after whole epochs: refused, not resumed with an empty history (which
    # recorded 1 epoch for a 3-epoch run)
    state.unlink()
    result = subprocess.run(command("train", "--resume", "--out", str(out), "--quiet"),
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2 and "state.json: missing training state" in result.stderr
    state.write_text(good_state)
    # truncate the newest checkpoint's data: the resume falls back to the one before
    newest = sorted((out / "checkpoints").glob("ckpt-*.data-*"),
                    key=lambda p: int(p.name.split("-")[1].split(".")[0]))[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    result = subprocess.run(command("train", "--resume", "--out", str(out)),
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is damaged" in result.stderr and "trying the one before" in result.stderr
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 4
    # a finished run without checkpoints (as committed models are kept): --resume would have
    # trained from scratch and replaced model.keras; it is refused in one line
    import shutil

    shutil.rmtree(out / "checkpoints")
    model_bytes = (out / "model.keras").read_bytes()
    result = subprocess.run(command("train", "--resume", "--out", str(out), "--quiet"),
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "a finished run without checkpoints; nothing to resume" in result.stderr
    assert (out / "model.keras").read_bytes() == model_bytes


@pytest.mark.extended
def test_a_full_disk_during_a_checkpoint_gets_one_line_and_leaves_no_half_checkpoint(tmp_path):
    import resource

    out = tmp_path / "full"

    def small_disk():
        # the file-size limit fails writes with EFBIG ("File too large"), as a full disk would
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    args = command("train", "--epochs", "1", "--train-limit", "300", "--test-limit", "100",
                   "--quiet", "--out", str(out))
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300,
                            preexec_fn=small_disk)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write checkpoint" in lines[0], result.stderr[-2000:]
    assert "file too large" in lines[0] and "--resume" in lines[0]
    assert not [name for name in os.listdir(out / "checkpoints") if name.endswith("_temp")]
    assert not (out / "metrics.json").exists()
    # with room again, the run continues
    resumed = subprocess.run(command("train", "--resume", "--out", str(out), "--quiet"),
                             capture_output=True, text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (out / "metrics.json").exists()
