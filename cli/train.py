"""`fmfp-tf train`."""
import os
import shlex
import sys

import click

from fmfp_tf.cli.options import SettingsCommand


def _refuse_unread(config, given):
    """An option given on the command line that this run never reads is an error, not a value
    recorded in config.json with no effect on the weights."""
    unread = set(config.unread_settings())
    from fmfp_tf.data import registry

    if not registry.get(config.dataset).needs_data_dir:
        unread.add("face_crop")  # generated images: there is no face to crop
    ctx = click.get_current_context()
    flags = {param.name: param.opts[0] for param in ctx.command.get_params(ctx)}
    for key, value in given.items():
        if value is not None and value != () and key in unread:
            flag = flags.get(key, "--" + key.replace("_", "-"))
            raise click.UsageError(f"{flag} is not read by this run (--defense {config.defense}, "
                                   f"--dataset {config.dataset}); drop it")


def _progress_bar(quiet):
    """Keras's progress bar only on a terminal: redirected to a file or a pipe, its control
    characters would fill it (the log still gives one plain line per epoch)."""
    return 1 if not quiet and sys.stdout.isatty() else 0


def _setting_groups():
    from fmfp_tf.config import setting_groups

    return setting_groups()


def _epilog():
    from fmfp_tf.config import groups

    return ("Settings by what reads them (the same keys in a --config YAML file): "
            + "; ".join(f"{group}: {', '.join(keys)}" for group, keys in groups().items()) + ".")


class TrainCommand(SettingsCommand):
    """`train`: the settings options derived from `config.setting_groups()` when the command
    parses (a plugin's method's settings included), its epilog the groups as they are then."""

    def format_epilog(self, ctx, formatter):
        self.epilog = _epilog()
        super().format_epilog(ctx, formatter)


@click.command(cls=TrainCommand, groups=_setting_groups)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML file of train settings (see configs/); flags override it.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Run directory (default runs/<dataset>-<model>-<defense>-...).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again in an --out that holds a run.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config_file, out, resume, overwrite, quiet, **options):
    """Train a (defended) classifier; writes model.keras, metrics.json, history.png, logs/.

    Example: fmfp-tf train --defense mask --size 20
    """
    import logging

    import keras

    from fmfp_tf.cli.options import needs_tensorflow

    if keras.backend.backend() == "tensorflow":
        needs_tensorflow("train")
        from fmfp_tf.training.run import run_job
    else:  # JAX, PyTorch: Keras's own fit (training/keras_run.py)
        from fmfp_tf.training.keras_run import run_job

    from fmfp_tf.config import resolve_train_config
    from fmfp_tf.training.run_directory import TrainingJob

    if quiet:
        logging.getLogger("fmfp_tf").setLevel(logging.WARNING)

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite contradict each other: --resume "
                               "continues the run in --out, --overwrite starts it again")
    if out == "":
        raise click.UsageError("--out is empty; give the run directory, or leave --out out for "
                               "runs/NAME")
    if resume:
        if not out:
            raise click.UsageError("--resume needs --out, the run directory to continue")
        _check_resume_options(out, config_file, options)
        job = TrainingJob.build(None, out, resume=True, verbose=_progress_bar(quiet))
    else:
        config = resolve_train_config(config_file, **options)
        _refuse_unread(config, options)
        out = out or os.path.join("runs", config.run_name())
        job = TrainingJob.build(config, out, overwrite=overwrite, verbose=_progress_bar(quiet))
    metrics = run_job(job)
    if quiet:
        click.echo(f"test_accuracy {metrics['test_accuracy']:.4f}  weights_sha256 "
                   f"{metrics['weights_sha256'][:16]}  run {out}")
    else:
        click.echo(summary(metrics, out))


def _check_resume_options(out, config_file, options):
    """--resume continues a run as recorded: options that repeat the recorded settings are
    accepted, options that would change them are refused (never silently ignored)."""
    if config_file:
        raise click.UsageError("--resume reads the settings recorded in the run; drop --config")
    from fmfp_tf.config import train_config
    from fmfp_tf.runs import read_config

    given = {k: v for k, v in options.items() if v is not None}
    if not given or not os.path.isfile(os.path.join(out, "config.json")):
        return  # nothing to compare, or nothing to resume (train says so)
    if given.get("data_dir"):
        given["data_dir"] = os.path.abspath(given["data_dir"])
    recorded = read_config(out).to_dict()
    asked = train_config({**recorded, **given}, "options").to_dict()
    changed = [f"--{key.replace('_', '-')} {asked[key]!r} (recorded: {recorded[key]!r})"
               for key in given if asked[key] != recorded[key]]
    if changed:
        raise click.UsageError(
            f"--resume continues the run in {out} as recorded; it cannot change "
            f"{', '.join(changed)}: start a new run with another --out")


def _which_model(metrics):
    """Why the final accuracy may differ from the last epoch's line: it is the saved model's."""
    used = metrics.get("precision", {}).get("used", "float32")
    averaged = metrics["config"].get("weight_averaging") == "ema"
    if used == "float32" and not averaged:
        return ""
    notes = [f"the per-epoch lines ran in {used}, as trained"] if used != "float32" else []
    if averaged:
        notes.append("with the averaged weights")
    return f" (the saved float32 model: {'; '.join(notes)})"


def summary(metrics, out):
    """What a run ended with and what to do next, with the run's real paths."""
    config = metrics["config"]
    size = (f" {metrics['size']} ({metrics['size_pixels']} px)" if metrics.get("size") else "")
    name = "-".join([config["dataset"], config["model"], config["defense"].replace("+", "-")])
    run = shlex.quote(out)
    return "\n".join([
        "",
        f"Done: {config['dataset']} {config['model']}, defense {config['defense']}{size}, "
        f"{metrics['epochs']} epochs in {metrics['wall_seconds']:.0f} s.",
        f"Test accuracy {100 * metrics['test_accuracy']:.2f} % on "
        f"{metrics['dataset']['test_examples']:,} test images{_which_model(metrics)}.",
        f"Run directory: {out} (model.keras, metrics.json, history.png, logs/ for TensorBoard)",
        "Next:",
        f"  fmfp-tf evaluate --model {run} --attacks fgsm,pgd,apgd-ce --n 200 --out "
        f"{shlex.quote(os.path.join(out, 'evaluation'))}",
        "      # robust accuracy, white-box: a few minutes on a laptop CPU; without --attacks and",
        "      # --n it runs every attack (C&W, AutoAttack) on 1,000 images, about an hour on 2",
        "      # cores; it says its plan and cost first",
        f"  fmfp-tf export --model {run} --out serving --name {name}"
        "    # a SavedModel for TF Serving",
    ])
