"""The fmfp-tf CLI end to end: train -> evaluate -> export, and clear errors on bad input."""
import json
import os
import re
import shutil
import subprocess
import sys

import click
import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
SMALL = ["--epochs", "2", "--train-limit", "430", "--test-limit", "200", "--quiet"]


def fmfp(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", *args], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # not --quiet: the summary and what reaches stderr are checked below
    masked = fmfp("train", "--defense", "mask", "--size", "8", *SMALL[:-1], "--out",
                  str(root / "masked"))
    assert masked.returncode == 0, masked.stderr[-3000:]
    (root / "masked.stdout").write_text(masked.stdout)
    (root / "masked.stderr").write_text(masked.stderr)
    twin = fmfp("train", "--defense", "none", *SMALL, "--out", str(root / "twin"))
    assert twin.returncode == 0, twin.stderr[-3000:]
    return root


def test_train_writes_a_complete_run_directory(runs):
    run = runs / "masked"
    for name in ("model.keras", "metrics.json", "history.png", "config.json", "logs",
                 "checkpoints"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(metrics["history"]) == 2 and metrics["config"]["defense"] == "mask"
    assert metrics["versions"]["tensorflow"] and metrics["seed"] == 0
    assert metrics["dataset"]["test_examples"] == 200
    assert any(f.startswith("events") for f in os.listdir(run / "logs"))
    assert metrics["size"] == "8%" and metrics["size_pixels"] == 3  # --size 8: 8 % of 32 px


def test_train_ends_with_a_summary_and_no_tensorflow_start_up_noise(runs):
    stdout = (runs / "masked.stdout").read_text()
    summary = stdout[stdout.index("Done:"):]
    run = str(runs / "masked")
    metrics = json.loads((runs / "masked" / "metrics.json").read_text())
    assert "defense mask 8% (3 px)" in summary
    assert f"Test accuracy {100 * metrics['test_accuracy']:.2f} % on 200 test images" in summary
    assert f"Run directory: {run}" in summary
    assert (f"fmfp-tf evaluate --model {run} --attacks fgsm,pgd,apgd-ce --n 200 --out "
            f"{os.path.join(run, 'evaluation')}") in summary
    assert "a few minutes" in summary and "about an hour" in summary
    assert f"fmfp-tf export --model {run} --out serving" in summary
    stderr = (runs / "masked.stderr").read_text()
    # output to a pipe: no progress bar, one plain line per epoch, the strategy by its name
    assert "\r" not in stdout + stderr and "\x08" not in stdout + stderr
    assert stderr.count("test_accuracy") == 2 and "strategy default with 1 replica" in stderr
    for notice in ("cuInit", "cuda drivers", "oneDNN", "absl::InitializeLog", "cpu_feature_guard"):
        assert notice not in stderr, stderr[:2000]


def test_evaluate_white_box_and_transfer(runs, tmp_path):
    out = tmp_path / "eval"
    result = fmfp("evaluate", "--model", str(runs / "masked"), "--attacks", "fgsm,pgd",
                  "--eps", "4/255,8/255", "--threat", "white-box,transfer", "--n", "64",
                  "--pgd-steps", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fgsm eps=8/255: accuracy" in result.stderr  # budgets as given, not 0.03137
    assert result.stderr.index("plan: 1 model(s) x 2 threat model(s)") < result.stderr.index(
        "fgsm eps=")
    payload = json.loads((out / "results.json").read_text())
    records = payload["records"]
    keys = {"model", "defense", "dataset", "attack", "threat_model", "eps", "n", "accuracy"}
    assert all(keys <= set(r) for r in records)
    threats = {r["threat_model"] for r in records}
    assert {"none", "white-box", "transfer"} <= threats
    transfer = [r for r in records if r["threat_model"] == "transfer"]
    assert all(r["source_model"] == "twin" for r in transfer)
    white = {(r["attack"], r["eps"]): r["accuracy"] for r in records
             if r["threat_model"] == "white-box"}
    clean = [r["accuracy"] for r in records if r["attack"] == "none"][0]
    assert white[("pgd", 8 / 255)] <= clean
    assert (out / "results.csv").read_text().count("\n") == len(records) + 1
    markdown = (out / "results.md").read_text()
    assert "Threat model: white-box" in markdown and "Threat model: transfer" in markdown
    assert "Gradient-masking checks" in markdown
    assert (out / "accuracy_vs_eps_white-box.png").exists()


def test_transfer_examples_are_crafted_once_per_source_and_image_set(runs):
    from fmfp_tf.evaluation import AttackSettings, evaluate, load_entry

    entry = load_entry(str(runs / "masked"))
    settings = AttackSettings(pgd_steps=3)
    crafted = {}
    first = evaluate([entry], ["fgsm", "pgd"], threats=("transfer",), n=40, settings=settings,
                     log=lambda m: None, crafted=crafted)
    assert len(crafted) == 2  # one set of examples per attack, crafted on the twin
    again = evaluate([entry], ["fgsm", "pgd"], threats=("transfer",), n=40, settings=settings,
                     log=lambda m: None, crafted=crafted)
    assert len(crafted) == 2
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in first]
    # other test images are other examples, never a stale cache hit
    evaluate([entry], ["fgsm"], threats=("transfer",), n=30, settings=settings,
             log=lambda m: None, crafted=crafted)
    assert len(crafted) == 3
    # a model's own white-box examples are kept only when it is the transfer source
    evaluate([entry], ["fgsm"], threats=("white-box",), n=30, settings=settings,
             log=lambda m: None, crafted=crafted)
    assert len(crafted) == 3
    twin = load_entry(str(runs / "twin"))
    evaluate([twin], ["fgsm"], threats=("white-box",), n=30, settings=settings, source=twin,
             log=lambda m: None, crafted=crafted)
    # fgsm: the examples transferred from the twin at n=30; the unbounded-PGD check is new
    assert len(crafted) == 4 and sum(key[2] == "fgsm" for key in crafted) == 2


@pytest.mark.extended
def test_export_serves_the_same_classes_and_holds_no_random_op(runs, tmp_path):
    base = tmp_path / "serving"
    result = fmfp("export", "--model", str(runs / "masked"), "--out", str(base), "--name", "signs")
    assert result.returncode == 0, result.stderr[-3000:]
    version_dir = base / "signs" / "1"
    assert (version_dir / "saved_model.pb").exists()
    again = fmfp("export", "--model", str(runs / "masked"), "--out", str(base), "--name",
                 "signs", "--version", "1")
    assert again.returncode == 2 and "already exists" in again.stderr
    script = f"""
import numpy as np, tensorflow as tf, keras
import fmfp_tf.layers
loaded = tf.saved_model.load({str(version_dir)!r})
fn = loaded.signatures["serving_default"]
x = np.random.default_rng(0).random((5, 32, 32, 3)).astype("float32")
out = fn(images=tf.constant(x))
model = keras.saving.load_model({str(runs / 'masked' / 'model.keras')!r})
expected = model.predict(x, verbose=0)
np.testing.assert_allclose(out["logits"].numpy(), expected, rtol=1e-4, atol=1e-4)
assert (out["classes"].numpy() == expected.argmax(-1)).all()
ops = {{op.type for op in fn.graph.get_operations()}}
for f in fn.graph.as_graph_def().library.function:
    ops |= {{node.op for node in f.node_def}}
assert not [o for o in ops if "Random" in o], sorted(o for o in ops if "Random" in o)
png = tf.io.encode_png(tf.cast(x[0] * 255, tf.uint8))
by_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.stack([png]))
assert by_bytes["classes"].shape == (1,)
print("ok")
"""
    checked = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=ENV, timeout=300)
    assert checked.returncode == 0 and checked.stdout.strip().endswith("ok"), checked.stderr[-3000:]
    shown = subprocess.run(["saved_model_cli", "show", "--dir", str(version_dir), "--all"],
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "serving_default" in shown.stdout and "probabilities" in shown.stdout
    # a SavedModel is TensorFlow's graph: on JAX, evaluating it is one line naming the way out
    on_jax = subprocess.run(
        [sys.executable, "-m", "fmfp_tf_cli_start", "evaluate", "--model", str(version_dir),
         "--unsafe-load", "--dataset", "synthetic", "--n", "8", "--attacks", "fgsm", "--out",
         str(tmp_path / "jax-eval")], capture_output=True, text=True, timeout=300,
        env={**ENV, "KERAS_BACKEND": "jax"})
    assert on_jax.returncode == 1 and "a SavedModel is a TensorFlow graph; Keras runs on jax" \
        in on_jax.stderr and "Traceback" not in on_jax.stderr, on_jax.stderr[-2000:]
    # saved_model_cli run answers with the Keras model's classes
    import numpy as np

    x = np.random.default_rng(1).random((4, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    ran = subprocess.run(["saved_model_cli", "run", "--dir", str(version_dir), "--tag_set", "serve",
                          "--signature_def", "serving_default", "--inputs",
                          f"images={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "cli_out")],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    import keras

    import fmfp_tf.layers  # noqa: F401

    model = keras.saving.load_model(str(runs / "masked" / "model.keras"))
    expected = model.predict(x, verbose=0).argmax(-1)
    np.testing.assert_array_equal(np.load(tmp_path / "cli_out" / "classes.npy"), expected)


@pytest.mark.parametrize("args, code, message", [
    (["train", "--defense", "mask", "--size", "-1"], 2, "size"),
    (["train", "--defense", "mask", "--size", "64px"], 2, "size = '64px'"),
    (["train", "--defense", "mask", "--size", "100"], 2, "percent of the image side"),
    (["train", "--defense", "none", "--size", "20"], 2, "defense 'none' has no FM/FP layer"),
    (["train", "--seed", "-1"], 2, "seed = -1 is invalid; expected an integer in 0..4294967295"),
    (["train", "--seed", "4294967296"], 2, "expected an integer in 0..4294967295"),
    (["train", "--image-size", "0"], 2, "two sides in 4..1024"),
    (["train", "--data-dir", "."], 2, "synthetic dataset is drawn from the seed"),
    (["train", "--defense", "mask", "--size", "120%"], 2, "percent of the image side"),
    (["train", "--defense", "mask", "--size", "big"], 2, "not a size"),
    (["reproduce", "table9", "--out", "x"], 2, "unknown table 'table9'"),
    (["reproduce", "table5", "--data-dir", "belgium", "--out", "x"], 2, "DATASET=DIR"),
    (["train", "--dataset", "mnist"], 2, "dataset"),
    (["train", "--defense", "blur"], 2, "defense"),
    (["train", "--dataset", "gtsrb", "--data-dir", "/nonexistent/dir"], 1, "not found"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x"], 1, "not found"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--cw-learning-rate", "nan"], 2,
     "--cw-learning-rate = nan is invalid; expected a finite number > 0"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--attacks", "fgsm,deepfool"],
     2, "--attacks: unknown deepfool"),
    (["export", "--model", "/nonexistent.keras", "--out", "x", "--name", "m"], 1, "not found"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--eps", "-1"], 2,
     "eps '-1' = -1 is outside [0, 1]"),
    (["train", "--batch-size", "1" + "0" * 30], 2, "batch_size = 1000"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--seed", "-1"], 2,
     "--seed = -1 is invalid; expected an integer in 0..4294967295"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--attacks", "fgsm",
      "--apgd-steps", "5"], 2, "--apgd-steps is given but no attack that reads it is run"),
    (["extract", "--max-size", "nan", "--out", "x", "a.zip"], 2, "got nan"),
    (["extract", "--max-size", "inf", "--out", "x", "a.zip"], 2, "at most 2^40; got inf"),
    (["extract", "--max-size", "0", "--out", "x", "a.zip"], 2, "> 0 and at most 2^40; got 0"),
    (["train", "--resume", "--overwrite", "--out", "x"], 2, "contradict each other"),
    (["train", "--optimizer", "nope"], 2, "optimizer = 'nope' is invalid; expected one of adam"),
    (["train", "--schedule", "nope"], 2, "expected one of constant, cosine, one-cycle"),
    (["train", "--out", ""], 2, "--out is empty"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--eps", ""], 2,
     "--eps is empty"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--skip", "-3"], 2,
     "--skip must be 0 or more; got -3"),
    (["export", "--model", "/nonexistent.keras", "--out", "x", "--name", "m", "--version",
      "99999999999999999999"], 2, "below 2^63"),
    (["export", "--model", "/nonexistent.keras", "--out", "x", "--name", "a\nb"], 2,
     "plain directory name"),
    (["train", "--defense", "padding", "--size", "20", "--layer-option", "interpolation=nearest",
      "--layer-option", "interpolation=bilinear"], 2, "interpolation is given twice"),
    (["reproduce", "table5", "--data-root", "/nonexistent", "--out", "x"], 2,
     "'/nonexistent' is not a directory"),
    # options the run would record but never read
    (["train", "--defense", "none", "--at-eps", "4/255"], 2,
     "--at-eps is not read by this run (--defense none"),
    (["train", "--defense", "mask", "--size", "20", "--at-steps", "3"], 2,
     "--at-steps is not read"),
    (["train", "--defense", "none", "--fill", "mean"], 2, "--fill is not read"),
    (["train", "--face-crop", "mtcnn"], 2, "--face-crop is not read by this run"),
    (["train", "--defense", "trades-at", "--at-clean-fraction", "0.2"], 2,
     "at_clean_fraction = 0.2 is invalid; expected the default (None): defense 'trades-at' "
     "does not read it"),
    (["train", "--defense", "pgd-at", "--trades-beta", "3"], 2, "--trades-beta is not read"),
    (["train", "--defense", "trades-at", "--mart-beta", "3"], 2, "--mart-beta is not read"),
    (["train", "--defense", "nfgsm-at", "--at-steps", "3"], 2, "at_steps = 3 is invalid; "
     "expected the default (7): defense 'nfgsm-at' does not read it"),
    (["train", "--defense", "fgsm-at", "--at-step-size", "0.01"], 2,
     "defense 'fgsm-at' does not read it"),
    # issue 41: silently accepted before
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--attacks", "fgsm",
      "--attack-precision", "bfloat16"], 2, "--attack-precision bfloat16 is given but no attack"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--source-model", "m.keras"],
     2, "--source-model crafts the transfer attacks, but --threat has no transfer"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--threat", "transfer",
      "--unbounded-check"], 2, "is a white-box check, but --threat has no white-box"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--attacks", "fgsm,pgd,fgsm"],
     2, "--attacks names fgsm twice"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--eps", "8/255,0.0313725490"],
     2, "--eps names 0.0313725490 twice (as 8/255 too)"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--eps", "0"], 2,
     "--eps 0 is no attack"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--autoattack-fast-steps", "0"],
     2, "--autoattack-fast-steps = 0 is invalid"),
    (["evaluate", "--model", "/nonexistent.keras", "--out", "x", "--attacks", "square",
      "--square-queries", "1" + "0" * 21], 2, "expected an integer in 1..10000000"),
    (["train", "--epochs", "9" * 23], 2, "an integer in 1..100000"),
])
def test_bad_input_gives_one_line_error_without_traceback(tmp_path, args, code, message,
                                                          monkeypatch, capsys):
    # in this process, through the console script's own error handling: the subprocess tests
    # above cover start-up; a subprocess per case would spend its time importing TensorFlow
    from fmfp_tf.cli import errors as cli_errors
    from fmfp_tf.cli.main import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["fmfp-tf", *args])
    with pytest.raises(SystemExit) as exited:
        cli_errors.run_guarded(cli)
    stderr = capsys.readouterr().err
    assert exited.value.code == code, (exited.value.code, stderr[-2000:])
    assert "Traceback" not in stderr
    assert message in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1


def test_bad_yaml_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 2\nlearning_rte: 0.1\n")
    result = fmfp("train", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "learning_rte" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_rejects_bad_eps(runs, tmp_path):
    result = fmfp("evaluate", "--model", str(runs / "masked"), "--eps", "2", "--out",
                  str(tmp_path / "e"))
    assert result.returncode == 2 and "eps" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "e").exists()


def test_evaluate_names_a_recorded_data_dir_that_is_gone(runs, tmp_path):
    import shutil

    from fmfp_tf.errors import DataError
    from fmfp_tf.evaluation import evaluate, load_entry

    run = tmp_path / "moved"
    shutil.copytree(runs / "masked", run)
    config = json.loads((run / "config.json").read_text())
    config.update(dataset="gtsrb", data_dir=str(tmp_path / "gone" / "gtsrb"))
    (run / "config.json").write_text(json.dumps(config))
    logged = []
    with pytest.raises(DataError, match=r"moved: .*gone/gtsrb, which is not a directory here; "
                                        r"pass data_dir=DIR"):
        evaluate([load_entry(str(runs / "masked")), load_entry(str(run))], ["fgsm"], n=8,
                 log=logged.append)
    assert logged == []  # refused before attacking the first model, not after


def test_lambda_models_are_refused_without_unsafe_flag(tmp_path):
    import keras

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(43)(keras.layers.Flatten()(
        keras.layers.Lambda(lambda t: t * 2.0)(inputs))))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    result = fmfp("export", "--model", path, "--out", str(tmp_path / "s"), "--name", "m")
    assert result.returncode == 1 and "Lambda" in result.stderr
    assert not (tmp_path / "s" / "m" / "1").exists()


def test_cli_size_is_a_percent_of_the_side_unless_it_says_px():
    # through the option `train` derives from the layer's settings
    from fmfp_tf.cli.train import train

    ctx = click.Context(train)
    option = next(param for param in train.get_params(ctx) if param.name == "size")

    def parse_size(text):
        return option.process_value(ctx, text)

    assert parse_size("20") == "20%"       # the paper's z
    assert parse_size("20%") == "20%"
    assert parse_size("0.2") == "20%"      # a fraction
    assert parse_size("6px") == "6px"
    assert parse_size(" 12.5% ") == "12.5%"
    with pytest.raises(click.BadParameter, match="whole number"):
        parse_size("6.5px")




def test_evaluate_with_apgd_square_and_autoattack_reports_the_worst_case(runs, tmp_path):
    out = tmp_path / "aa"
    result = fmfp("evaluate", "--model", str(runs / "twin"), "--attacks",
                  "pgd,apgd-ce,apgd-t,square,autoattack", "--n", "48", "--pgd-steps", "5",
                  "--apgd-steps", "10", "--apgd-target-classes", "2", "--square-queries", "40",
                  "--autoattack-steps", "10", "--autoattack-target-classes", "2",
                  "--autoattack-queries", "40", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads((out / "results.json").read_text())["records"]
    white = {r["attack"]: r for r in records if r["threat_model"] == "white-box"}
    assert {"pgd", "apgd-ce", "apgd-t", "square", "autoattack", "worst-case"} <= set(white)
    bounded = [white[a]["accuracy"] for a in ("pgd", "apgd-ce", "apgd-t", "square", "autoattack")]
    assert white["worst-case"]["accuracy"] <= min(bounded)
    assert white["autoattack"]["params"]["version"] == "standard"
    # the share robust after each of the ensemble's attacks: in order, never rising, the last
    # one the cell's accuracy, and the stages kept while it ran are gone once the cell is kept
    steps = white["autoattack"]["components"]
    assert list(steps) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert list(steps.values()) == sorted(steps.values(), reverse=True)
    assert steps["square"] == white["autoattack"]["accuracy"]
    assert not list((out / "cells").glob("stages/*"))
    # --attack-precision auto (the default): bfloat16 on a CPU with it natively, and then the
    # record says so; float32 elsewhere, and the params are as they always were
    from fmfp_tf.attacks import precision as attack_precision

    params = dict(white["apgd-t"]["params"])
    assert params.pop("precision", "float32") == attack_precision.resolve("auto")
    assert params == {"loss": "dlr", "targeted": True, "steps": 10, "restarts": 1,
                      "target_classes": 2, "seed": 0}
    markdown = (out / "results.md").read_text()
    assert "Worst case over all attacks" in markdown and "- AutoAttack: version=standard" in markdown
    assert "| &nbsp;&nbsp;after FAB-T |" in markdown
    assert f"autoattack: after Square, robust {steps['square']:.4f}" in result.stderr


def test_resume_accepts_the_recorded_settings_and_refuses_changes(runs):
    changed = fmfp("train", "--resume", "--out", str(runs / "twin"), "--epochs", "4")
    assert changed.returncode == 2
    assert "cannot change --epochs 4 (recorded: 2)" in changed.stderr
    # the same settings again are not a change: the finished run is resumed as it is
    same = fmfp("train", "--resume", "--out", str(runs / "twin"), "--epochs", "2", "--quiet")
    assert same.returncode == 0, same.stderr[-2000:]


@pytest.mark.extended
def test_unclear_messages_now_name_the_problem(tmp_path):
    damaged = tmp_path / "m.keras"
    damaged.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    result = fmfp("evaluate", "--model", str(damaged), "--out", str(tmp_path / "e"))
    assert result.returncode == 1 and "not a valid .keras file (truncated or corrupt" in result.stderr
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    # in tmp_path: a refused run must not leave runs/ behind in the checkout either
    result = fmfp("train", "--dataset", "gtsrb", "--data-dir", str(a_file), cwd=tmp_path)
    assert result.returncode == 1 and "is a file; expected the dataset's directory" in result.stderr
    assert not (tmp_path / "runs").exists()
    result = fmfp("reproduce", str(tmp_path / "mine.yaml"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "mine.yaml: table file not found" in result.stderr


def test_a_model_naming_an_unknown_function_gets_one_short_line(tmp_path):
    import zipfile

    import keras

    path = tmp_path / "good.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(str(path))
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    # what a malicious file would try: an activation that resolves to os.system
    config["config"]["layers"][-1]["config"]["activation"] = {
        "module": "os", "class_name": "function", "config": "system",
        "registered_name": "function"}
    files["config.json"] = json.dumps(config).encode()
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(evil, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    result = fmfp("export", "--model", str(evil), "--out", str(tmp_path / "s"), "--name", "m")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300, result.stderr
    assert "Could not locate function 'system'" in lines[0]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"),
                    reason="needs root and runuser to act as another user")
def test_an_export_is_readable_by_another_user_under_umask_022(runs):
    import tempfile

    # outside pytest's 0700 temporary tree, so that another user can reach it at all
    base = tempfile.mkdtemp(prefix="fmfp-export-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        result = subprocess.run(
            [sys.executable, "-m", "fmfp_tf_cli_start", "export", "--model", str(runs / "masked"),
             "--out", base, "--name", "signs"],
            capture_output=True, text=True, env=ENV, timeout=300,
            preexec_fn=lambda: os.umask(0o022))
        assert result.returncode == 0, result.stderr[-2000:]
        version_dir = os.path.join(base, "signs", "1")
        as_nobody = ["runuser", "-u", "nobody", "--"]
        # what TF Serving running as another user needs: every directory entered, every file read
        read_all = f"find {version_dir} -type f -exec cat {{}} + > /dev/null"
        read = subprocess.run(as_nobody + ["sh", "-c", read_all], capture_output=True, text=True)
        assert read.returncode == 0, read.stderr
        assert "Permission denied" not in read.stderr
        # saved_model_cli itself, where this platform lets that user run Python with TensorFlow
        python = subprocess.run(as_nobody + [sys.executable, "-c", "import tensorflow"],
                                capture_output=True, text=True)
        if python.returncode == 0:
            shown = subprocess.run(as_nobody + [sys.executable, "-m",
                                                "tensorflow.python.tools.saved_model_cli", "show",
                                                "--dir", version_dir, "--all"],
                                   capture_output=True, text=True, timeout=300)
            assert shown.returncode == 0 and "serving_default" in shown.stdout, shown.stderr[-2000:]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_library_errors_name_parameters_and_the_cli_shows_flags(tmp_path):
    from fmfp_tf.data.archives import extract
    from fmfp_tf.errors import DataError

    archive = tmp_path / "a.zip"
    import zipfile

    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("x.txt", b"x")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="pass overwrite=True to replace it"):
        extract(str(archive), str(tmp_path / "out"))
    result = fmfp("extract", str(archive), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "pass --overwrite to replace it" in result.stderr


@pytest.mark.extended
def test_an_output_under_a_regular_file_is_one_line_before_any_work(tmp_path):
    import keras

    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(43)]).save(tmp_path / "tiny.keras")
    (tmp_path / "afile").write_text("")
    for args in (["train", "--epochs", "1", "--train-limit", "50", "--test-limit", "20"],
                 ["evaluate", "--model", "tiny.keras", "--dataset", "synthetic", "--n", "10",
                  "--attacks", "fgsm"],
                 ["export", "--model", "tiny.keras", "--name", "m"],
                 ["reproduce", "table5", "--quick", "--data-root", str(tmp_path)]):
        result = fmfp(*args, "--out", "afile/x", cwd=tmp_path)
        assert result.returncode == 1, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        # the path asked for, or the file in its way
        assert re.search(r"afile(/x)?: a part of this path is a file, not a directory",
                         result.stderr), result.stderr
        assert "accuracy" not in result.stderr  # evaluate refused before attacking


def test_a_numeric_fill_is_a_number(tmp_path):
    result = fmfp("train", "--defense", "mask", "--size", "20", "--fill", "0.5", "--epochs", "1",
                  "--train-limit", "60", "--test-limit", "20", "--quiet", "--out",
                  str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["fill"] == 0.5


def test_an_output_that_is_a_link_loop_is_named_as_such(tmp_path, monkeypatch, capsys):
    from fmfp_tf.cli import errors as cli_errors
    from fmfp_tf.cli.main import cli

    os.symlink(tmp_path / "loop", tmp_path / "loop")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["fmfp-tf", "train", "--out", "loop", "--epochs", "1"])
    with pytest.raises(SystemExit) as exited:
        cli_errors.run_guarded(cli)
    stderr = capsys.readouterr().err
    assert exited.value.code == 1 and "loop: a symbolic link that leads nowhere" in stderr
    assert "--force" not in stderr  # train has no --force


@pytest.mark.parametrize("number, text", [(30, "read-only file system"),
                                          (13, "permission denied"),
                                          (20, "a part of this path is a file")])
def test_path_errors_from_any_command_are_one_line_naming_the_path(number, text, capsys,
                                                                   monkeypatch):
    import click

    from fmfp_tf.cli import errors as cli_errors

    @click.command()
    def writes():
        raise OSError(number, os.strerror(number), "/somewhere/run")

    monkeypatch.setattr(sys, "argv", ["fmfp-tf"])
    with pytest.raises(SystemExit) as exited:
        cli_errors.run_guarded(writes)
    stderr = capsys.readouterr().err
    assert exited.value.code == 1 and stderr.startswith(f"Error: /somewhere/run: {text}")
    assert len(stderr.strip().splitlines()) == 1


JAX_CLI = """import sys
import fmfp_tf_cli_start
try:
    fmfp_tf_cli_start.main()
finally:
    print("TENSORFLOW " + str("tensorflow" in sys.modules))
"""


@pytest.mark.extended
def test_a_model_trained_on_tensorflow_is_evaluated_on_jax_without_tensorflow(runs, tmp_path):
    pytest.importorskip("jax")
    args = ["evaluate", "--model", str(runs / "twin"), "--attacks", "fgsm,apgd-ce,fab-t", "--n",
            "48", "--apgd-steps", "10", "--apgd-target-classes", "2", "--fab-steps", "10",
            "--fab-target-classes", "2"]
    on_tf = fmfp(*args, "--out", str(tmp_path / "tf"))
    assert on_tf.returncode == 0, on_tf.stderr[-3000:]
    on_jax = subprocess.run([sys.executable, "-c", JAX_CLI, *args, "--out", str(tmp_path / "jax")],
                            capture_output=True, text=True, env=dict(ENV, KERAS_BACKEND="jax"),
                            timeout=600)
    assert on_jax.returncode == 0, on_jax.stderr[-3000:]
    assert "TENSORFLOW False" in on_jax.stdout
    accuracies = {}
    for backend in ("tf", "jax"):
        records = json.loads((tmp_path / backend / "results.json").read_text())["records"]
        accuracies[backend] = {r["attack"]: r["accuracy"] for r in records
                               if r["threat_model"] == "white-box"}
    assert set(accuracies["jax"]) >= {"fgsm", "apgd-ce", "fab-t", "worst-case"}
    for attack, accuracy in accuracies["tf"].items():
        # the same random starts on both backends; only rounding differs
        assert abs(accuracies["jax"][attack] - accuracy) <= 2 / 48 + 1e-9, (attack, accuracies)


@pytest.mark.extended
def test_one_evaluation_at_a_time_writes_into_a_folder_and_cells_must_be_a_folder(tmp_path):
    """Issue 41: two evaluations into one folder both exited 0 and the last replaced the
    other's results; OUT/cells as a file was refused only after the first attack."""
    import keras

    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(43)]).save(tmp_path / "tiny.keras")
    command = [sys.executable, "-m", "fmfp_tf_cli_start", "evaluate", "--model", "tiny.keras",
               "--dataset", "synthetic", "--n", "200", "--attacks", "pgd", "--pgd-steps",
               "100000", "--out", "out"]  # minutes: it is killed once the second has tried
    first = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.time() + 300
        while not (tmp_path / "out" / ".evaluate.lock").exists() or not (
                tmp_path / "out" / ".evaluate.lock").read_text().strip():
            assert first.poll() is None, first.stderr.read()[-2000:]
            assert time.time() < deadline
            time.sleep(0.1)
        second = fmfp("evaluate", "--model", "tiny.keras", "--dataset", "synthetic", "--n",
                      "10", "--attacks", "fgsm", "--out", "out", cwd=tmp_path)
        assert first.poll() is None  # still running while the second tried
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"this evaluation folder is in use by process {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cells").write_text("")
    result = fmfp("evaluate", "--model", "tiny.keras", "--dataset", "synthetic", "--n", "10",
                  "--attacks", "fgsm", "--out", "other", cwd=tmp_path)
    assert result.returncode == 2 and "cells: is not a folder" in result.stderr
    assert "accuracy" not in result.stderr  # refused before any attack


def test_help_states_requirements_and_defaults_in_words():
    from click.testing import CliRunner

    from fmfp_tf.cli.main import cli

    runner = CliRunner()
    extract = " ".join(runner.invoke(cli, ["extract", "--help"]).output.split())
    assert "--max-size GIB" in extract and "1099511627776" not in extract
    train = " ".join(runner.invoke(cli, ["train", "--help"]).output.split())
    assert "required with --defense mask or padding" in train
    assert "[default: 8/255]" in train


def test_help_and_version_answer_without_keras_and_say_what_the_full_cli_says():
    from click.testing import CliRunner

    import fmfp_tf
    import fmfp_tf_cli_group
    from fmfp_tf.cli.main import cli

    # every built-in command has its summary, declared once
    assert set(cli.commands) == set(fmfp_tf_cli_group.SUMMARIES)
    quick = fmfp_tf_cli_group.build(fmfp_tf_cli_group.placeholders())
    for args in (["--help"], ["--version"]):
        fast, full = (CliRunner().invoke(group, args, prog_name="fmfp-tf")
                      for group in (quick, cli))
        assert fast.exit_code == full.exit_code == 0 and fast.output == full.output, args
    assert fmfp_tf.__version__ in full.output
    # the console script answers them without importing Keras (seconds of TensorFlow)
    probe = ("import sys, fmfp_tf_cli_start\nsys.argv = ['fmfp-tf', '--help']\n"
             "try:\n    fmfp_tf_cli_start.main()\nexcept SystemExit:\n    pass\n"
             "print('keras' in sys.modules, 'fmfp_tf' in sys.modules, file=sys.stderr)")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV,
                         timeout=120)
    assert ran.stderr.strip().splitlines()[-1] == "False False", ran.stderr[-2000:]
    assert "train" in ran.stdout and "Commands:" in ran.stdout
