"""Extending the toolkit: a defense layer, an attack and a dataset, each one new module plus one
registry line, run through `train`, `evaluate` and `export` without any other edit."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from toys import NOISE_METHOD, STRIPES, TOY_FLIP

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# one new file holding all three; each `register...` call is the one registry line
TOY_MODULE = textwrap.dedent('''
    import keras
    import numpy as np

    from fmfp_tf import defense_registry
    from fmfp_tf.attacks.fgsm import fgsm
    from fmfp_tf.data import registry as datasets
    from fmfp_tf.data.images import Arrays
    from fmfp_tf.evaluation import attack_specs
    from fmfp_tf.layers.base import RandomImageDefense


    {TOY_FLIP}


    def half_fgsm(model, x, y, eps, batch_size=256, progress=None):
        """FGSM with half the budget: a toy attack with its own function."""
        return fgsm(model, x, y, eps / 2, batch_size=batch_size, progress=progress)


    {STRIPES}


    defense_registry.register_layer("toyflip", ToyFlip)
    attack_specs.register(attack_specs.AttackSpec("half-fgsm", "FGSM eps/2", half_fgsm,
                                                  lambda settings, eps, randomized: {}))
    datasets.register(datasets.Dataset("stripes", "toy stripes", generate=stripes))
''').replace("{TOY_FLIP}", TOY_FLIP).replace("{STRIPES}", STRIPES)

SCRIPT = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import toy_extension  # noqa: F401  (the new file)

    from fmfp_tf import export, runs
    from fmfp_tf.config import TrainConfig
    from fmfp_tf.errors import FmfpError
    from fmfp_tf.evaluation.robustness import evaluate, load_entry
    from fmfp_tf.training import train

    out = sys.argv[2]
    common = dict(dataset="stripes", epochs=2, batch_size=32, image_size=(16, 16))
    train(TrainConfig(defense="none", **common), out + "/twin", verbose=0)
    metrics = train(TrainConfig(defense="toyflip", size="2px", test_time=True, **common),
                    out + "/toy", verbose=0)
    entry = load_entry(out + "/toy")
    records = evaluate([entry], ["half-fgsm"], threats=["white-box", "transfer", "adaptive"],
                       n=30, log=lambda message: None)
    try:
        export.export(out + "/toy", out + "/serving", "toy")
        refused = None
    except FmfpError as error:
        refused = str(error)
    print(json.dumps({"accuracy": metrics["test_accuracy"],
                      "twin": runs.find_twin(out + "/toy"),
                      "records": [{k: r.get(k) for k in ("attack", "threat_model", "accuracy")}
                                  for r in records],
                      "export_refused": refused}))
''')


def test_a_toy_defense_attack_and_dataset_run_through_train_evaluate_and_export(tmp_path):
    (tmp_path / "toy_extension.py").write_text(TOY_MODULE)
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(tmp_path / "runs")],
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["accuracy"] > 0.5  # three easy classes: the toy data really trained
    assert found["twin"] == str(tmp_path / "runs" / "twin")
    by_threat = {(r["attack"], r["threat_model"]) for r in found["records"]}
    # the toy attack ran under every threat model; the toy layer's test_time made the EOT
    # (adaptive) threat model apply without any edit to the evaluation code
    assert {("half-fgsm", "white-box"), ("half-fgsm", "transfer"),
            ("half-fgsm", "adaptive")} <= by_threat
    assert found["export_refused"] and "test_time" in found["export_refused"]


IN_PACKAGE_LAYER = textwrap.dedent('''
    import keras

    from fmfp_tf.layers.base import RandomImageDefense


    {TOY_FLIP}
''').replace("{TOY_FLIP}", TOY_FLIP)


def test_a_layer_registered_by_name_loads_in_a_fresh_process(tmp_path):
    """A defense layer added as the package adds one (its module + one "module:Class" line in
    `defense_registry.LAYERS`): a saved model holding it loads in a fresh process that never
    imported the module, because the loader resolves every registered layer."""
    (tmp_path / "toyflip_layer.py").write_text(IN_PACKAGE_LAYER)
    register = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from fmfp_tf import defense_registry; "
                "defense_registry.LAYERS.register('toyflip', 'toyflip_layer:ToyFlip'); ")
    script = tmp_path / "save.py"
    script.write_text(register.replace("; ", "\n") + textwrap.dedent('''
        import keras
        from fmfp_tf.defense_registry import layer_class
        keras.Sequential([keras.Input((8, 8, 3)), layer_class("toyflip")(size=0.2),
                          keras.layers.Flatten(), keras.layers.Dense(3)]).save(sys.argv[2])
    '''))
    save = subprocess.run([sys.executable, str(script), str(tmp_path), str(tmp_path / "m.keras")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert save.returncode == 0, save.stderr[-2000:]
    load = tmp_path / "load.py"
    load.write_text(register.replace("; ", "\n") + textwrap.dedent('''
        assert "toyflip_layer" not in sys.modules
        from fmfp_tf.models_io import load_model
        model = load_model(sys.argv[2])
        print(type(model.layers[0]).__name__)
    '''))
    loaded = subprocess.run([sys.executable, str(load), str(tmp_path), str(tmp_path / "m.keras")],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().endswith("ToyFlip")


IN_PACKAGE_METHOD = textwrap.dedent('''
    import dataclasses
    import typing

    import tensorflow as tf

    from fmfp_tf.settings import Settings, setting
''') + NOISE_METHOD


def test_a_method_with_a_setting_of_its_own_is_two_files_in_the_package(tmp_path):
    """An adversarial-training method added as the package adds one: its module (a settings
    class and the function) + one `AdversarialTraining` line in `defense_registry`, naming both
    by "module:name". A fresh `fmfp-tf train` derives --noise-share, checks it, records it in
    config.json and refuses it where the run does not read it."""
    (tmp_path / "toy_noise.py").write_text(IN_PACKAGE_METHOD)
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent('''
        import sys
        sys.path.insert(0, sys.argv[1])
        from fmfp_tf import defense_registry
        # the one line the package's ADVERSARIAL_TRAINING table would hold
        defense_registry.ADVERSARIAL_TRAINING.register("noise", defense_registry.AdversarialTraining(
            "noise", "uniform noise (toy)", "toy_noise:noise_examples",
            settings=(defense_registry.OnlineATSettings, "toy_noise:NoiseSettings")))
        assert "toy_noise" not in sys.modules  # resolved when the command parses
        from fmfp_tf.cli import errors
        from fmfp_tf.cli.main import cli
        sys.argv = ["fmfp-tf", "train", *sys.argv[2:]]
        errors.run_guarded(cli)
    '''))
    common = ["--train-limit", "256", "--test-limit", "64", "--epochs", "1", "--batch-size",
              "64", "--probe-images", "0", "--quiet"]

    def train(*args):
        return subprocess.run([sys.executable, str(script), str(tmp_path), *args, *common],
                              capture_output=True, text=True, env=ENV, timeout=600)

    trained = train("--defense", "noise-at", "--noise-share", "0.5", "--out",
                    str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["noise_share"] == 0.5 and config["defense"] == "noise-at"
    bad = train("--defense", "noise-at", "--noise-share", "2", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "noise_share = 2.0 is invalid" in bad.stderr
    unread = train("--noise-share", "0.5", "--out", str(tmp_path / "unread"))
    assert unread.returncode == 2 and "--noise-share is not read by this run" in unread.stderr
    assert "Traceback" not in bad.stderr + unread.stderr
