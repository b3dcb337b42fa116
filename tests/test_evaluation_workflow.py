"""The evaluation workflow: the plan and its cost said first, progress, and every finished cell
kept (killed mid-way, the same command continues it)."""
import os

import pytest


@pytest.mark.extended
def test_a_killed_evaluation_continues_to_the_same_results(tmp_path):
    """SIGKILL after the first finished cell; the same command again reads the finished cells
    back, attacks only the missing ones, and ends with the records of an uninterrupted run."""
    import json
    import signal
    import subprocess
    import sys
    import time

    import keras

    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                      keras.layers.Flatten(), keras.layers.Dense(43)]).save(tmp_path / "m.keras")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def command(out):
        return [sys.executable, "-m", "fmfp_tf_cli_start", "evaluate", "--model",
                str(tmp_path / "m.keras"), "--dataset", "synthetic", "--n", "100", "--attacks",
                "fgsm,pgd", "--pgd-steps", "200", "--eps", "4/255,8/255", "--out", str(out)]

    whole = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, env=env,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    cells_dir = tmp_path / "part" / "cells"
    process = subprocess.Popen(command(tmp_path / "part"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    def finished_cells():  # a hidden temporary file is a cell being written, not a cell
        if not cells_dir.is_dir():
            return 0
        return len([p for p in cells_dir.iterdir() if not p.name.startswith(".")])

    deadline = time.time() + 300
    while not finished_cells() and time.time() < deadline:
        assert process.poll() is None, "finished before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # a kill during a write leaves only a hidden temporary file, never a half cell
    kept = finished_cells()
    assert kept >= 1 and not (tmp_path / "part" / "results.json").exists()
    again = subprocess.run(command(tmp_path / "part"), capture_output=True, text=True, env=env,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{kept} finished cell(s) kept from an earlier run; those of this very " \
        "measurement" in again.stderr
    assert again.stderr.count("done earlier, read back") == kept

    def records(out):
        found = json.loads((out / "results.json").read_text())["records"]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in found]

    assert records(tmp_path / "part") == records(tmp_path / "whole")


def test_the_plan_and_its_cost_come_before_any_attack(tmp_path):
    import keras

    from fmfp_tf.evaluation import attack_specs
    from fmfp_tf.evaluation.robustness import evaluate, load_entry

    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(43)]).save(tmp_path / "m.keras")
    seen = []
    evaluate([load_entry(str(tmp_path / "m.keras"))], ["fgsm", "pgd"], eps_values=["4/255",
             "8/255"], n=16, dataset="synthetic", log=seen.append)
    # in the unit records count: FGSM 1 gradient and PGD 20 + 1 forward per image, at two eps,
    # and the unbounded check's 20 + 1 once, on 16 images
    assert seen[0].startswith("plan: 1 model(s) x 1 threat model(s) (white-box) x attacks "
                              "(fgsm, pgd) x 2 eps = 5 cells on up to 16 test images each; at "
                              f"most {16 * (2 * 1 + 2 * 21 + 21):,} forward and "
                              f"{16 * (2 * 1 + 2 * 20 + 20)} backward passes, about")
    assert "ms per image and gradient" in seen[0] and "ms per forward pass" in seen[0]
    assert not any("plan" in line for line in seen[1:])
    # every attack declares its cost, so the plan never leaves one out
    settings = attack_specs.AttackSettings()
    for name, spec in attack_specs.ATTACKS.items():
        cost = spec.planned_passes(spec.params(settings, 8 / 255))
        assert cost.forward >= 1 and 0 <= cost.backward <= cost.forward, name
    apgd_t = attack_specs.get("apgd-t")
    assert apgd_t.planned_passes(apgd_t.params(settings, 8 / 255)).backward == (
        settings.apgd_steps + 1) * settings.apgd_target_classes


def test_shards_of_an_evaluation_add_up_to_the_whole(tmp_path):
    """--skip: two shards of n images are the whole 2n-image sample, image for image, and say
    which shard they are; a skip past the test split is refused by name."""
    import keras
    import numpy as np
    import pytest

    from fmfp_tf.errors import UsageError
    from fmfp_tf.evaluation import write_report
    from fmfp_tf.evaluation.robustness import evaluate, load_entry, test_images

    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                      keras.layers.Flatten(), keras.layers.Dense(43)]).save(tmp_path / "m.keras")
    entry = load_entry(str(tmp_path / "m.keras"))
    whole_x, whole_y, _, _ = test_images(entry, 24, dataset="synthetic")
    second_x, second_y, _, _ = test_images(entry, 12, dataset="synthetic", skip=12)
    np.testing.assert_array_equal(second_x, whole_x[12:])
    np.testing.assert_array_equal(second_y, whole_y[12:])

    def run(n, skip):  # FGSM has no random start: each image's outcome is the same in a shard
        records = evaluate([entry], ["fgsm"], eps_values=["2/255"], n=n, skip=skip,
                           dataset="synthetic", log=lambda _: None)
        return {r["attack"]: r for r in records}

    whole, first, second = run(24, 0), run(12, 0), run(12, 12)
    assert (first["none"]["skip"], second["none"]["skip"], second["fgsm"]["skip"]) == (0, 12, 12)
    for attack in ("none", "fgsm"):
        assert second[attack]["n"] == 12
        assert round(24 * whole[attack]["accuracy"]) == round(
            12 * first[attack]["accuracy"]) + round(12 * second[attack]["accuracy"])
    write_report(list(second.values()), str(tmp_path / "shard"))
    header = (tmp_path / "shard" / "results.md").read_text()
    assert "on 12 test images per model (a shard: the seeded test sample's images after the " \
           "first 12)" in header
    assert "skip" in (tmp_path / "shard" / "results.csv").read_text().splitlines()[0]
    with pytest.raises(UsageError, match="skip=5000 leaves no test images"):
        evaluate([entry], ["fgsm"], n=12, skip=5000, dataset="synthetic", log=lambda _: None)
    with pytest.raises(UsageError, match="skip must be a non-negative integer; got -1"):
        evaluate([entry], ["fgsm"], n=12, skip=-1, dataset="synthetic", log=lambda _: None)


def test_long_attacks_report_the_share_still_robust_to_callbacks_that_take_it():
    import keras
    import numpy as np

    from fmfp_tf import attacks

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    x = np.random.default_rng(0).random((32, 8, 8, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x)).argmax(-1).astype("int32")  # all clean-correct
    for attack, kwargs in ((attacks.square, {"queries": 300}),
                           (attacks.apgd, {"steps": 5, "restarts": 2}),
                           (attacks.autoattack, {"steps": 5, "queries": 100})):
        seen, plain = [], []
        attack(model, x, y, eps=2 / 255, progress=lambda k, n, robust: seen.append(robust),
               **kwargs)
        attack(model, x, y, eps=2 / 255, progress=lambda k, n: plain.append(k), **kwargs)
        assert seen and plain and len(seen) == len(plain), attack.__name__
        assert all(0.0 <= r <= 1.0 for r in seen) and seen == sorted(seen, reverse=True)


def test_autoattack_progress_weighs_each_attack_by_its_passes():
    # after APGD-CE (5 passes per image) of an ensemble whose later attacks cost 15 + 20 + 100
    # passes, about 4 % is done, not 1/4; the shares only grow and the last call is k == total
    import keras
    import numpy as np

    from fmfp_tf import attacks

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    x = np.random.default_rng(0).random((16, 8, 8, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x)).argmax(-1).astype("int32")
    calls, logged = [], []
    attacks.autoattack(model, x, y, eps=1e-4, steps=5, target_classes=3, queries=300,
                       progress=lambda k, n, robust: calls.append((k, n, robust)),
                       log=lambda name, robust: logged.append((name, len(calls))))
    assert logged[0][0] == "apgd-ce" and all(robust == 1.0 for _, _, robust in calls)
    k, n, _ = calls[logged[0][1] - 1]  # the call that closed APGD-CE
    assert abs(k / n - 5 / 140) < 0.01, (k, n)
    shares = [k / n for k, n, _ in calls]
    assert shares == sorted(shares) and calls[-1][0] == calls[-1][1]


def test_an_interrupted_autoattack_resumes_after_the_last_attack_it_finished(tmp_path,
                                                                             monkeypatch):
    """Stopped after FAB-T, the same cell run again reads APGD-CE, APGD-T and FAB-T back (none of
    them runs), runs Square only, and returns and logs what an uninterrupted ensemble does; the
    stages are removed once the cell is kept."""
    import importlib

    import keras
    import numpy as np
    import pytest

    from fmfp_tf.evaluation import cells

    # the module, not the function `fmfp_tf.attacks.autoattack` the package exports
    autoattack_module = importlib.import_module("fmfp_tf.attacks.autoattack")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    x = np.random.default_rng(0).random((24, 8, 8, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x)).argmax(-1).astype("int32")
    run = dict(eps=0.02, steps=5, target_classes=3, queries=60, batch_size=8)
    whole_log = []
    whole = autoattack_module.autoattack(model, x, y, log=lambda *a: whole_log.append(a), **run)
    fooled_by_gradients = (keras.ops.convert_to_numpy(model(whole)).argmax(-1) != y).mean()
    assert 0 < fooled_by_gradients < 1  # a test of something: some images fall, some stand

    store = cells.CellStore(str(tmp_path / "cells"))

    def stop_after_fab(name, robust):
        if name == "fab-t":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        autoattack_module.autoattack(model, x, y, stages=store.stages("k"), log=stop_after_fab,
                                     **run)
    assert len(list((tmp_path / "cells" / "stages").glob("k.*.npz"))) == 3
    ran = []
    for name in ("apgd", "fab", "square"):
        original = getattr(autoattack_module, name)
        monkeypatch.setattr(autoattack_module, name,
                            lambda *a, _f=original, _n=name, **k: ran.append(_n) or _f(*a, **k))
    logged = []
    again = autoattack_module.autoattack(model, x, y, stages=store.stages("k"),
                                         log=lambda *a: logged.append(a), **run)
    # each attack's share robust is logged as the interrupted run measured it
    assert ran == ["square"] and logged == whole_log and len(logged) == 4
    np.testing.assert_array_equal(again, whole)
    store.put("k", {"accuracy": 0.5})
    assert not list((tmp_path / "cells" / "stages").glob("k.*"))


def test_every_record_carries_its_counted_passes_and_the_reports_show_them(tmp_path):
    """results.json/csv/md and the kept cells carry each cell's forward and backward passes as
    counted; a cell read back keeps the passes it was measured with; the worst case costs the
    sum of its attacks."""
    import csv
    import json

    import keras

    from fmfp_tf.evaluation import write_report
    from fmfp_tf.evaluation.attack_specs import AttackSettings
    from fmfp_tf.evaluation.cells import CellStore
    from fmfp_tf.evaluation.robustness import evaluate, load_entry

    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(43)]).save(tmp_path / "m.keras")
    settings = AttackSettings(pgd_steps=3, autoattack_fast_steps=2,
                              autoattack_fast_target_steps=2, unbounded_check=False)
    store = CellStore(str(tmp_path / "out" / "cells"))

    def run():
        return evaluate([load_entry(str(tmp_path / "m.keras"))], ["fgsm", "pgd", "autoattack-fast"],
                        n=20, dataset="synthetic", settings=settings, store=store,
                        log=lambda line: None)

    records = {r["attack"]: r for r in run()}
    # one image reads the number of classes; then a gradient per image (FGSM), and PGD's 3
    # gradients plus its final prediction per image
    assert records["fgsm"]["passes"] == {"forward": 1 + 20, "backward": 20}
    assert records["pgd"]["passes"] == {"forward": 1 + 20 * 4, "backward": 20 * 3}
    assert records["autoattack-fast"]["passes"]["backward"] > 0
    assert records["worst-case"]["passes"] == {
        key: sum(records[a]["passes"][key] for a in ("fgsm", "pgd", "autoattack-fast"))
        for key in ("forward", "backward")}
    again = {r["attack"]: r for r in run()}  # every cell read back
    assert {a: r["passes"] for a, r in again.items() if "passes" in r} == {
        a: r["passes"] for a, r in records.items() if "passes" in r}
    write_report(list(records.values()), str(tmp_path / "out"))
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv", encoding="utf-8")))
    fgsm = next(row for row in rows if row["attack"] == "fgsm")
    assert (fgsm["forward_passes"], fgsm["backward_passes"]) == ("21", "20")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["records"]
    assert next(r for r in saved if r["attack"] == "pgd")["passes"]["backward"] == 60
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "## Cost" in markdown and "| white-box | FGSM eps=8/255 | 21 / 20" in markdown
    assert "AutoAttack-fast (not the standard AutoAttack)" in markdown


@pytest.mark.extended
def test_a_forged_or_damaged_cell_is_never_reported_and_is_measured_again(tmp_path):
    """Issue 41's forgeries: an edited accuracy, survival bits all set, another cell renamed onto
    this key, a link to a forged file, a record that is a list, a wrong image count, a missing
    accuracy: each is refused with one line naming the file and why, measured again, and the
    results are those of an honest run."""
    import json

    import keras

    from fmfp_tf.evaluation.attack_specs import AttackSettings
    from fmfp_tf.evaluation.cells import CellStore
    from fmfp_tf.evaluation.robustness import evaluate, load_entry, test_images

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(43)])
    model.save(tmp_path / "m.keras")
    # fitted to the very images it is tested on, so that the attacks break some, not all
    x, y, _, _ = test_images(load_entry(str(tmp_path / "m.keras")), 16, dataset="synthetic")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, verbose=0)
    model.save(tmp_path / "m.keras")
    settings = AttackSettings(pgd_steps=2, unbounded_check=False)
    folder = tmp_path / "out" / "cells"

    def run():
        lines = []
        records = evaluate([load_entry(str(tmp_path / "m.keras"))], ["fgsm", "pgd"], n=16,
                           eps_values=["16/255"], dataset="synthetic", settings=settings,
                           store=CellStore(str(folder)), log=lines.append)
        return {r["attack"]: r for r in records}, lines

    honest, _ = run()
    # a test of something: per-image bits of both kinds
    assert 0 < honest["fgsm"]["accuracy"] < 1 and 0 < honest["worst-case"]["accuracy"] < 1
    paths = {json.loads(p.read_text())["record"]["attack"]: p for p in folder.glob("*.json")}
    original = {attack: path.read_text() for attack, path in paths.items()}

    def forged(edit):
        saved = json.loads(original["fgsm"])
        edit(saved)
        return json.dumps(saved)

    def all_bits_set(saved):
        saved["correct"]["bits"] = "ff" * len(bytes.fromhex(saved["correct"]["bits"]))
        saved["record"]["accuracy"] = 1.0

    forgeries = {
        "does not follow from its per-image results":
            forged(lambda s: s["record"].update(accuracy=0.99)),
        "a cell of another measurement": original["pgd"],  # renamed onto fgsm's key
        "is not its key's": forged(lambda s: s["record"].update(attack="pgd")),
        "not a cell": json.dumps({"record": [1, 2]}),
        "per-image results for 99 images": forged(
            lambda s: s["correct"].update(n=99)),
        "is not a number in [0, 1]": forged(lambda s: s["record"].pop("accuracy")),
        "symbolic link": "link",
    }
    for reason, content in forgeries.items():
        target = paths["fgsm"]
        target.unlink()
        if content == "link":
            (tmp_path / "forged.json").write_text(forged(lambda s: s["record"].update(
                accuracy=0.0, correct=None)))
            target.symlink_to(tmp_path / "forged.json")
        else:
            target.write_text(content)
        records, lines = run()
        said = [line for line in lines if "the kept cell" in line]
        assert len(said) == 1 and reason in said[0] and str(target) in said[0], (reason, lines)
        assert records["fgsm"]["accuracy"] == honest["fgsm"]["accuracy"], reason
        assert records["worst-case"]["accuracy"] == honest["worst-case"]["accuracy"], reason
        assert not target.is_symlink()  # measured again and replaced by a real cell
    # all bits set with a matching accuracy is consistent, yet not this measurement's: a cell
    # whose parts were edited to fit no longer hashes to its name
    saved = json.loads(original["fgsm"])
    all_bits_set(saved)
    saved["parts"]["eps"] = 0.5
    paths["fgsm"].write_text(json.dumps(saved))
    records, lines = run()
    assert any("another measurement" in line for line in lines)
    assert records["worst-case"]["accuracy"] == honest["worst-case"]["accuracy"]


@pytest.mark.extended
def test_the_table_script_keeps_eps_apart_and_never_joins_two_models(tmp_path):
    """Issue 41: a folder with cells at two eps gave the 2/255 cell's number for both; shards
    of two models were joined."""
    import subprocess
    import sys

    import keras

    from fmfp_tf.evaluation import write_report
    from fmfp_tf.evaluation.attack_specs import AttackSettings
    from fmfp_tf.evaluation.cells import CellStore
    from fmfp_tf.evaluation.robustness import evaluate, load_entry

    settings = AttackSettings(unbounded_check=False)
    for name, seed in (("a", 0), ("b", 1)):
        keras.utils.set_random_seed(seed)
        keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                          keras.layers.Dense(43)]).save(tmp_path / f"{name}.keras")
    for name, skip, eps in (("a", 0, ["1/255", "64/255"]), ("b", 8, ["1/255"])):
        out = tmp_path / f"{name}{skip}"
        records = evaluate([load_entry(str(tmp_path / f"{name}.keras"))], ["fgsm"], eps, n=8,
                           dataset="synthetic", settings=settings, skip=skip,
                           store=CellStore(str(out / "cells")), log=lambda line: None)
        write_report(records, str(out))
    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks",
                          "robust_gtsrb_table.py")
    table = subprocess.run([sys.executable, script, f"a={tmp_path / 'a0'}"], capture_output=True,
                           text=True, timeout=300)
    assert table.returncode == 0, table.stderr[-2000:]
    rows = [line for line in table.stdout.splitlines() if "fgsm (white-box" in line]
    assert len(rows) == 2 and "eps 0.003922" in rows[0] + rows[1] and "eps 0.251" in "".join(rows)
    joined = subprocess.run([sys.executable, script, f"ab={tmp_path / 'a0'}+{tmp_path / 'b8'}"],
                            capture_output=True, text=True, timeout=300)
    assert joined.returncode != 0 and "not joined" in joined.stderr, joined.stderr[-2000:]


@pytest.mark.extended
def test_ctrl_c_stops_an_evaluation_at_the_next_batch_and_says_how_to_continue(tmp_path):
    """SIGINT during a long attack: the evaluation stops after the running batch (not after the
    attack), exits 130 naming the finished cells kept and the command that continues; that
    command reads them back."""
    import signal
    import subprocess
    import sys
    import time

    import keras

    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                      keras.layers.Flatten(), keras.layers.Dense(43)]).save(tmp_path / "m.keras")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "fmfp_tf_cli_start", "evaluate", "--model",
               str(tmp_path / "m.keras"), "--dataset", "synthetic", "--n", "96", "--attacks",
               "fgsm,pgd", "--pgd-steps", "3000", "--batch-size", "8",
               "--no-unbounded-check", "--out", str(tmp_path / "eval")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    cells = tmp_path / "eval" / "cells"
    deadline = time.time() + 300
    while not (cells.is_dir() and any(p.suffix == ".json" for p in cells.iterdir())):
        assert process.poll() is None and time.time() < deadline, "no cell before the signal"
        time.sleep(0.1)
    time.sleep(2)  # inside PGD's first batches (PGD attacks every image, fooled or not)
    process.send_signal(signal.SIGINT)
    signalled = time.time()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-2000:]
    # 12 batches of 3,000 steps would take much longer: it stopped after the running one
    assert time.time() - signalled < 60
    assert "signal 2: stopping after the running batch" in err
    assert "stopped by signal 2 in m.keras [white-box] pgd" in err
    assert "1 finished cell(s) kept in" in err and "the same command continues: fmfp-tf " \
        "evaluate --model" in err and "Traceback" not in err
    again = subprocess.run(command[:command.index("--pgd-steps") + 1] + ["3"]
                           + command[command.index("--pgd-steps") + 2:],
                           capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "fgsm eps=8/255: accuracy" in again.stderr and "done earlier, read back" in \
        again.stderr


def test_an_evaluation_of_a_model_taking_0_255_maps_the_images_onto_its_range(tmp_path):
    """input_range=(0, 255): the same records (input_range beside them) as the hand-rescaled
    model evaluated on [0, 1]; the range is part of the cells' keys, so the same model file
    evaluated in [0, 1] reads none of them back."""
    import keras

    from fmfp_tf.evaluation import AttackSettings
    from fmfp_tf.evaluation.cells import CellStore
    from fmfp_tf.evaluation.robustness import evaluate, load_entry

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 127.5, -1),
                              keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(43)])
    model.save(tmp_path / "byte.keras")
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(255.0),
                      model]).save(tmp_path / "unit.keras")
    settings = AttackSettings(apgd_steps=3, unbounded_check=False)

    def run(name, **kwargs):
        records = evaluate([load_entry(str(tmp_path / name))], ["fgsm", "apgd-ce"], n=24,
                           settings=settings, dataset="synthetic", log=lambda _: None,
                           store=CellStore(str(tmp_path / "cells")), **kwargs)
        return {r["attack"]: r for r in records}

    byte, unit = run("byte.keras", input_range=(0, 255)), run("unit.keras")
    for attack in ("none", "fgsm", "apgd-ce", "worst-case"):
        assert abs(byte[attack]["accuracy"] - unit[attack]["accuracy"]) <= 1 / 24, attack
        assert byte[attack]["input_range"] == [0.0, 255.0] and "input_range" not in unit[attack]
    assert any(byte[a]["accuracy"] < byte["none"]["accuracy"] for a in ("fgsm", "apgd-ce"))
    heard = []
    evaluate([load_entry(str(tmp_path / "byte.keras"))], ["fgsm"], n=24, settings=settings,
             dataset="synthetic", log=heard.append, store=CellStore(str(tmp_path / "cells")))
    assert not any("done earlier, read back" in line for line in heard), heard


def test_a_second_ctrl_c_stops_at_once_even_inside_a_long_batch(tmp_path):
    """While one long compiled batch runs (Python's handlers wait until it returns), the first
    SIGINT is answered at once with what will happen, and a second ends the process at once
    (exit 130), keeping what was finished before."""
    import signal
    import subprocess
    import sys
    import time

    import keras

    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                      keras.layers.Flatten(), keras.layers.Dense(43)]).save(tmp_path / "m.keras")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fmfp_tf_cli_start", "evaluate", "--model",
         str(tmp_path / "m.keras"), "--dataset", "synthetic", "--n", "64", "--attacks",
         "fgsm,pgd", "--pgd-steps", "200000", "--batch-size", "64",
         "--no-unbounded-check", "--out", str(tmp_path / "eval")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cells = tmp_path / "eval" / "cells"
    deadline = time.time() + 300
    while not (cells.is_dir() and any(p.suffix == ".json" for p in cells.iterdir())):
        assert process.poll() is None and time.time() < deadline, "no cell before the signal"
        time.sleep(0.1)
    time.sleep(3)  # inside PGD's one batch of 200,000 steps
    process.send_signal(signal.SIGINT)
    time.sleep(3)
    assert process.poll() is None  # the first one waits for the batch
    process.send_signal(signal.SIGINT)
    signalled = time.time()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and time.time() - signalled < 20, err[-2000:]
    assert "signal 2: stopping after the running batch" in err
    assert "stopped at once by a second Ctrl-C" in err and "Traceback" not in err
    assert len([p for p in cells.iterdir() if p.suffix == ".json"]) == 1  # FGSM's, kept


def test_a_wrong_data_folder_is_said_before_the_plan_measures_anything(tmp_path):
    import keras
    import pytest

    from fmfp_tf.errors import FmfpError
    from fmfp_tf.evaluation.robustness import evaluate, load_entry

    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(43)]).save(tmp_path / "m.keras")
    seen = []
    with pytest.raises(FmfpError, match="not found"):
        evaluate([load_entry(str(tmp_path / "m.keras"))], ["fgsm"], n=8, dataset="gtsrb",
                 data_dir=str(tmp_path / "nowhere"), log=seen.append)
    assert seen == []  # no plan, no speed measurement before the error


def test_a_long_batch_is_not_silent():
    # attacks report between batches; one batch may run for minutes: a line still comes
    # every EVERY seconds, and the regular reports keep their own pace
    import time

    from fmfp_tf.evaluation import robustness

    lines = []
    progress = robustness._Progress(lines.append, "  m [white-box] apgd-ce", time.time())
    progress.EVERY = 0.3
    with progress:
        time.sleep(1.6)
        progress(1, 4, 0.5)
        time.sleep(1.2)
    assert any("a batch is running (nothing reported yet" in line for line in lines), lines
    assert any("1/4, robust so far 0.500" in line for line in lines), lines
    assert any("1/4 reported" in line and "ago" in line for line in lines), lines
    count = len(lines)
    time.sleep(0.8)
    assert len(lines) == count  # the thread ends with the cell
