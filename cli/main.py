"""`fmfp-tf`: train, evaluate, export and reproduce FM/FP-defended classifiers."""
import logging
import sys

import click
import fmfp_tf_cli_group

from fmfp_tf.cli import errors
from fmfp_tf.cli.evaluate import evaluate
from fmfp_tf.cli.export import export
from fmfp_tf.cli.extract import extract
from fmfp_tf.cli.report import report
from fmfp_tf.cli.reproduce import reproduce
from fmfp_tf.cli.train import train


def _load_plugins(ctx, param, modules):
    # eager, so that a plugin's names and settings exist before the command parses its options
    from fmfp_tf import plugins

    plugins.load(modules)


class Commands(click.Group):
    """The built-in commands, then those installed plugins declare (group fmfp_tf.commands)."""

    def _installed(self):
        from fmfp_tf import plugins

        return {name: command for name, command in plugins.commands().items()
                if name not in self.commands}

    def list_commands(self, ctx):
        return [*super().list_commands(ctx), *sorted(self._installed())]

    def get_command(self, ctx, name):
        return super().get_command(ctx, name) or self._installed().get(name)


# the group's help, options and summaries are declared outside the package, where `fmfp-tf
# --help` and `--version` read them without importing Keras (fmfp_tf_cli_start)
cli = fmfp_tf_cli_group.build([train, evaluate, export, extract, reproduce, report], Commands,
                              _load_plugins)


def show_library_messages(level=logging.INFO):
    """The library's progress messages (the `fmfp_tf` logger) on stderr, one plain line each;
    commands lower the level for --quiet."""
    logger = logging.getLogger("fmfp_tf")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def main():
    show_library_messages()
    errors.run_guarded(cli)


if __name__ == "__main__":
    main()
