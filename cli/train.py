"""`fmfp-tf train`."""
import os
import shlex
import sys

import click

from fmfp_tf import defense_registry
from fmfp_tf.cli.options import DerivedHelp, parse_layer_options, parse_size
from fmfp_tf.config import GROUPS, OVERFIT_GUARDS, PRECISIONS, WEIGHT_AVERAGING
from fmfp_tf.data import registry as datasets
from fmfp_tf.models import names as model_names
from fmfp_tf.optimization_registry import OPTIMIZERS, SCHEDULES


def _refuse_unread(config, given):
    """An option given on the command line that this run never reads is an error, not a value
    recorded in config.json with no effect on the weights."""
    unread = set(config.unread_settings())
    from fmfp_tf.data import registry

    if not registry.get(config.dataset).needs_data_dir:
        unread.add("face_crop")  # generated images: there is no face to crop
    flags = {param.name: param.opts[0] for param in click.get_current_context().command.params}
    for key, value in given.items():
        if value is not None and value != () and key in unread:
            flag = flags.get(key, "--" + key.replace("_", "-"))
            raise click.UsageError(f"{flag} is not read by this run (--defense {config.defense}, "
                                   f"--dataset {config.dataset}); drop it")


def _progress_bar(quiet):
    """Keras's progress bar only on a terminal: redirected to a file or a pipe, its control
    characters would fill it (the log still gives one plain line per epoch)."""
    return 1 if not quiet and sys.stdout.isatty() else 0


def _fill(value):
    """A number stays a number (the layers take one); names stay names for the config's check."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


@click.command(epilog="Settings by what reads them (the same keys in a --config YAML file): "
               + "; ".join(f"{group}: {', '.join(keys)}" for group, keys in GROUPS.items()) + ".")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML file of train settings (see configs/); flags override it.")
@click.option("--dataset", cls=DerivedHelp,
              help_from=lambda: f"{', '.join(datasets.names())} (default synthetic).")
@click.option("--data-dir", help="Directory of the dataset in its official layout.")
@click.option("--model", cls=DerivedHelp,
              help_from=lambda: f"{', '.join(model_names())} (default dnn1).")
@click.option("--defense", cls=DerivedHelp,
              help_from=lambda: f"{', '.join(defense_registry.names())} (default none).")
@click.option("--size", callback=parse_size,
              help="FM square side / FP largest shrink: the paper's z, a percent of the image "
                   "side (20 = 20%: 6 px of 32); 6px for pixels, 0.2 for a fraction. Required "
                   "with --defense mask or padding.")
@click.option("--fill", callback=lambda ctx, param, value: _fill(value),
              help="zero (default), mean, noise or a number.")
@click.option("--layer-option", "layer_options", multiple=True, callback=parse_layer_options,
              help="Another argument of the defense layer, KEY=VALUE (e.g. "
                   "interpolation=nearest for padding); repeatable.")
@click.option("--epochs", type=int, help="Passes over the training set (default 8).")
@click.option("--batch-size", type=int, help="Global batch size, over all replicas (default 32).")
@click.option("--learning-rate", type=float,
              help="Learning rate, the peak under a schedule (default 1e-3).")
@click.option("--optimizer", cls=DerivedHelp,
              help_from=lambda: f"{', '.join(OPTIMIZERS.names())} (default adam; sgd: momentum "
                                "0.9, Nesterov).")
@click.option("--schedule", cls=DerivedHelp,
              help_from=lambda: f"Learning-rate schedule: {', '.join(SCHEDULES.names())} (default "
                                "constant); cosine takes --warmup-epochs.")
@click.option("--warmup-epochs", type=float, help="Linear warm-up of the cosine schedule.")
@click.option("--weight-decay", type=float, help="Decoupled weight decay (adamw, sgd).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1),
              help="Seed of weights, shuffling and the layers, 0..2^32-1 (default 0).")
@click.option("--image-size", type=click.IntRange(4, 1024),
              help="Square image side in pixels, 4..1024 (default 32).")
@click.option("--face-crop", help="auto (default: mtcnn for face datasets), none, center, mtcnn.")
@click.option("--train-limit", type=int, help="Use a seeded random sample of N training images.")
@click.option("--test-limit", type=int, help="Use a seeded random sample of N test images.")
@click.option("--on-bad-image", type=click.Choice(["fail", "skip"]),
              help="What to do with corrupt or wrong-mode image files (default fail).")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Training precision (default auto: bfloat16 where the CPU/GPU computes it "
                   "natively, else float32); the saved model is float32.")
@click.option("--strategy", help="auto (default), default, mirrored or multiworker (TF_CONFIG).")
@click.option("--test-time/--no-test-time", default=None,
              help="Keep FM/FP active at inference (a randomized defense; evaluate with EOT).")
@click.option("--at-eps", help="Adversarial-training budget, e.g. 8/255 (default 8/255).")
@click.option("--at-steps", type=int, help="PGD-AT steps (default 7).")
@click.option("--weight-averaging", type=click.Choice(WEIGHT_AVERAGING),
              help="ema: save the exponential moving average of the weights (the raw ones go "
                   "to model-raw.keras).")
@click.option("--ema-decay", type=float, help="Decay of --weight-averaging ema (default 0.999).")
@click.option("--probe-images", type=int,
              help="Held-out training images attacked (FGSM, PGD-10) after every epoch; "
                   "default 512 under fgsm-at/pgd-at/fast-at, 0 to turn off.")
@click.option("--overfit-guard", type=click.Choice(OVERFIT_GUARDS),
              help="After a catastrophic-overfitting collapse: restore the best PGD epoch "
                   "(default) or only warn.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Run directory (default runs/<dataset>-<model>-<defense>-...).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again in an --out that holds a run.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config_file, out, resume, overwrite, quiet, image_size, at_eps, **options):
    """Train a (defended) classifier; writes model.keras, metrics.json, history.png, logs/.

    Example: fmfp-tf train --defense mask --size 20
    """
    import logging

    import keras

    from fmfp_tf.cli.options import needs_tensorflow

    if keras.backend.backend() == "tensorflow":
        needs_tensorflow("train")
        from fmfp_tf.training import train as run_training
    else:  # JAX, PyTorch: Keras's own fit (training/keras_run.py)
        from fmfp_tf.training.keras_run import train as run_training

    from fmfp_tf.budgets import parse_eps
    from fmfp_tf.config import resolve_train_config

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
        _check_resume_options(out, config_file, image_size, at_eps, options)
        metrics = run_training(None, out, resume=True, verbose=_progress_bar(quiet))
    else:
        config = resolve_train_config(
            config_file,
            image_size=(image_size, image_size) if image_size else None,
            at_eps=parse_eps(at_eps) if at_eps is not None else None,
            **options,
        )
        _refuse_unread(config, {**options, "at_eps": at_eps})
        out = out or os.path.join("runs", config.run_name())
        metrics = run_training(config, out, overwrite=overwrite, verbose=_progress_bar(quiet))
    if quiet:
        click.echo(f"test_accuracy {metrics['test_accuracy']:.4f}  weights_sha256 "
                   f"{metrics['weights_sha256'][:16]}  run {out}")
    else:
        click.echo(summary(metrics, out))


def _check_resume_options(out, config_file, image_size, at_eps, options):
    """--resume continues a run as recorded: options that repeat the recorded settings are
    accepted, options that would change them are refused (never silently ignored)."""
    if config_file:
        raise click.UsageError("--resume reads the settings recorded in the run; drop --config")
    from fmfp_tf.budgets import parse_eps
    from fmfp_tf.config import train_config
    from fmfp_tf.runs import read_config

    given = {k: v for k, v in options.items() if v is not None}
    if image_size:
        given["image_size"] = (image_size, image_size)
    if at_eps is not None:
        given["at_eps"] = parse_eps(at_eps)
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
