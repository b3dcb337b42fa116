"""The `fmfp-tf` command group, declared once: its help, its options and each built-in command's
one-line summary (not part of the library).

It sits outside the `fmfp_tf` package, as `fmfp_tf_cli_start` does, and imports nothing but
click: `import fmfp_tf` imports Keras and its backend (seconds; TensorFlow's import is most of
them), so `fmfp-tf --help` and `fmfp-tf --version` are answered from here by the same group with
placeholder commands (`fmfp_tf_cli_start`), and `fmfp_tf.cli.main` builds the real one from it.
Both print the same text (tests/test_cli.py).
"""
import importlib.util
import os
import re

import click

HELP = "Feature mask / feature padding defenses against adversarial examples."

SUMMARIES = {
    "evaluate": "Robust accuracy under attacks and threat models, with intervals.",
    "export": "Export a trained model as a SavedModel laid out for TF Serving.",
    "extract": "Safely extract an official dataset archive (zip or tar).",
    "report": "Join the shard folders of one evaluation into one report.",
    "reproduce": "Reproduce the paper's tables, with a verdict per claim.",
    "train": "Train a (defended) classifier into a run folder.",
}

PLUGIN_HELP = ("Import MODULE first (repeatable): a plugin that registers defense layers, "
               "attacks, datasets or adversarial-training methods. Installed plugins "
               "(entry-point group fmfp_tf.plugins) are always loaded.")


def version():
    """The package's version, read from fmfp_tf/version.py without importing the package."""
    spec = importlib.util.find_spec("fmfp_tf")  # finds the folder; runs no package code
    path = os.path.join(os.path.dirname(spec.origin), "version.py")
    with open(path, encoding="utf-8") as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)


def build(commands, cls=click.Group, load_plugins=None):
    """The group with `commands` (click commands named as in SUMMARIES, whose summaries they
    show), of class `cls`; `load_plugins(ctx, param, modules)` runs for `--plugin`."""

    @click.group(cls=cls, help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(version(), prog_name="fmfp-tf")
    @click.option("--plugin", "plugins", multiple=True, metavar="MODULE", is_eager=True,
                  expose_value=False, callback=load_plugins, help=PLUGIN_HELP)
    def cli():
        pass

    for command in commands:
        command.short_help = SUMMARIES.get(command.name, command.short_help)
        cli.add_command(command)
    return cli


def placeholders():
    """The built-in commands as names and summaries only: enough for the group's help."""
    return [click.Command(name) for name in SUMMARIES]
