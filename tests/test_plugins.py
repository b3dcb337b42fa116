"""Plugins across processes: a temporary package adds a defense layer, an adversarial-training
method, an attack with a setting of its own, a dataset and a command, each one module plus one
registration line, and fresh `fmfp-tf` processes train, evaluate and run them with no other edit
(docs/architecture.md, "Extending: files to touch")."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from toys import NOISE_METHOD, STRIPES, TOY_FLIP

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# each kind of thing: (file, source); the file registers it in its last line
FILES = {
    "toyplugin/layer.py": '''
        import keras

        from fmfp_tf import defense_registry
        from fmfp_tf.layers.base import RandomImageDefense


        {TOY_FLIP}


        defense_registry.register_layer("toyflip", ToyFlip)
    ''',
    "toyplugin/method.py": '''
        import dataclasses
        import typing

        import tensorflow as tf

        from fmfp_tf import defense_registry
        from fmfp_tf.settings import Settings, setting


        {NOISE_METHOD}


        defense_registry.register_method(defense_registry.AdversarialTraining(
            "noise", "uniform noise (toy)", "toyplugin.method:noise_examples",
            settings=(defense_registry.OnlineATSettings, NoiseSettings)))
    ''',
    "toyplugin/attack.py": '''
        import dataclasses
        import typing

        from fmfp_tf.attacks.fgsm import fgsm
        from fmfp_tf.evaluation import attack_specs
        from fmfp_tf.settings import Settings, setting


        @dataclasses.dataclass(frozen=True)
        class PartFGSMSettings(Settings):
            prefix: typing.ClassVar[str] = "part"
            fraction: float = setting(0.5, "share of eps the step uses", above=0.0, maximum=1.0)


        def part_fgsm(model, x, y, eps, fraction=0.5, batch_size=256, progress=None):
            """FGSM with a share of the budget."""
            return fgsm(model, x, y, eps * fraction, batch_size=batch_size, progress=progress)


        attack_specs.register(attack_specs.AttackSpec(
            "part-fgsm", "FGSM, part of eps", part_fgsm,
            lambda s, eps, r: {"fraction": s.part.fraction}, settings=(PartFGSMSettings,),
            cost=lambda p: 1))
    ''',
    "toyplugin/dataset.py": '''
        import numpy as np

        from fmfp_tf.data import registry
        from fmfp_tf.data.images import Arrays


        {STRIPES}


        registry.register(registry.Dataset("stripes", "toy stripes", generate=stripes))
    ''',
    "toyplugin/command.py": '''
        import click


        @click.command()
        def names():
            """Prints the registered names (a plugin's command)."""
            from fmfp_tf import defense_registry
            from fmfp_tf.data import registry
            from fmfp_tf.evaluation import attack_specs

            click.echo(" ".join([*defense_registry.names(), *registry.names(),
                                 *attack_specs.names_selectable()]))
    ''',
    # the plugin's one line per kind: an import (layer, method, attack, dataset) ...
    "toyplugin/model.py": '''
        import keras

        from fmfp_tf import models


        def toynet(input_shape, num_classes):
            """A linear classifier: the smallest model builder."""
            return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                                     keras.layers.Dense(num_classes)], name="toynet")


        models.register("toynet", toynet)
    ''',
    "toyplugin/schedule.py": '''
        from fmfp_tf import optimization_registry


        def halved(config, total_steps, steps_per_epoch):
            """Half the configured rate throughout: the smallest schedule builder."""
            return config.learning_rate / 2


        optimization_registry.register_schedule("halved", halved)
    ''',
    "toyplugin/__init__.py": ("from toyplugin import attack, dataset, layer, method, model, "
                              "schedule  # noqa\n"),
}
# ... and its entry points: the plugin itself, and one line per command
ENTRY_POINTS = "[fmfp_tf.plugins]\ntoy = toyplugin\n\n[fmfp_tf.commands]\ntoy-names = toyplugin.command:names\n"


def _write_plugin(root, installed):
    for path, source in FILES.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source).replace("{TOY_FLIP}", TOY_FLIP)
                          .replace("{STRIPES}", STRIPES).replace("{NOISE_METHOD}", NOISE_METHOD))
    if installed:  # what `pip install` of the plugin would leave: its metadata, with entry points
        info = root / "toyplugin-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(ENTRY_POINTS)


def _fmfp(root, *args, cwd):
    env = dict(ENV, PYTHONPATH=os.pathsep.join(filter(None, [str(root),
                                                             ENV.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


TRAIN = ["train", "--dataset", "stripes", "--defense", "toyflip+noise-at", "--size", "2px",
         "--noise-share", "0.5", "--epochs", "2", "--image-size", "16", "--batch-size", "32", "--probe-images", "0",
         "--quiet"]
EVALUATE = ["evaluate", "--attacks", "part-fgsm,fgsm", "--part-fraction", "0.25", "--n", "30",
            "--no-unbounded-check"]


@pytest.mark.extended
@pytest.mark.parametrize("installed", [True, False], ids=["entry-points", "--plugin"])
def test_a_plugins_things_work_in_fresh_processes(tmp_path, installed):
    root = tmp_path / "site"
    _write_plugin(root, installed)
    plugin = [] if installed else ["--plugin", "toyplugin"]
    run = tmp_path / "run"
    trained = _fmfp(root, *plugin, *TRAIN, "--out", str(run), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] > 0.5
    # the method's own setting: a flag derived from its settings class, recorded under its key
    assert json.loads((run / "config.json").read_text())["noise_share"] == 0.5
    unread = _fmfp(root, *plugin, "train", "--dataset", "stripes", "--noise-share", "0.5",
                   "--out", str(tmp_path / "none"), cwd=tmp_path)
    assert unread.returncode == 2 and "--noise-share is not read by this run" in unread.stderr
    # a fresh process loads the run (its config names the plugin's layer, method and dataset;
    # its model.keras holds the layer) and runs the plugin's attack with its own option
    evaluated = _fmfp(root, *plugin, *EVALUATE, "--model", str(run), "--out",
                      str(tmp_path / "eval"), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    records = json.loads((tmp_path / "eval" / "results.json").read_text())["records"]
    part = next(r for r in records if r["attack"] == "part-fgsm")
    assert part["params"] == {"fraction": 0.25}
    fgsm = next(r for r in records if r["attack"] == "fgsm")
    assert part["accuracy"] >= fgsm["accuracy"] - 0.1  # a quarter of the step hurts less
    # every name list in help is written after plugins load
    helped = ["".join(_fmfp(root, *plugin, command, "--help", cwd=tmp_path).stdout.split())
              for command in ("train", "evaluate")]  # (help wraps lines, at hyphens too)
    assert "toynet" in helped[0] and "toyflip+noise-at" in helped[0] and "stripes" in helped[0]
    assert "halved" in helped[0] and "--noise-share" in helped[0]
    assert "part-fgsm" in helped[1]
    toynet = _fmfp(root, *plugin, "train", "--dataset", "stripes", "--model", "toynet",
                   "--schedule", "halved", "--epochs", "1", "--image-size", "16", "--quiet",
                   "--out", str(tmp_path / "toynet"), cwd=tmp_path)
    assert toynet.returncode == 0, toynet.stderr[-3000:]
    if installed:
        listed = _fmfp(root, "toy-names", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr[-3000:]
        assert {"toyflip", "noise-at", "toyflip+noise-at", "stripes", "part-fgsm"} <= set(
            listed.stdout.split())
    else:
        # without the plugin the same command names what is missing, in one line
        missing = _fmfp(root, "evaluate", "--attacks", "fgsm", "--model", str(run), "--out",
                        str(tmp_path / "e2"), cwd=tmp_path)
        assert missing.returncode != 0
        assert "toyflip" in missing.stderr.lower() and "--plugin" in missing.stderr
        assert "Traceback" not in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_each_kind_is_one_module_plus_one_line():
    # the claim of docs/architecture.md's table, for the plugin route: every kind's module ends
    # with its one registration (or is named by one entry-point line)
    for path in ("toyplugin/layer.py", "toyplugin/method.py", "toyplugin/attack.py",
                 "toyplugin/dataset.py", "toyplugin/model.py", "toyplugin/schedule.py"):
        source = textwrap.dedent(FILES[path]).strip()
        module = path.split("/")[1][:-3]
        assert module in FILES["toyplugin/__init__.py"]
        last = source.split("\n\n\n")[-1]
        assert last.startswith(("defense_registry.register", "attack_specs.register",
                                "registry.register", "models.register",
                                "optimization_registry.register")), path
    assert "toyplugin.command:names" in ENTRY_POINTS
