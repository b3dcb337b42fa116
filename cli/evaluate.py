"""`fmfp-tf evaluate`: its attack settings options are derived from the attack registry (each
attack's own settings class), so an attack registered with new settings gets its options."""
import os
import shlex
import sys

import click

from fmfp_tf.cli.options import DerivedHelp, SettingsCommand, given_settings
from fmfp_tf.evaluation import attack_specs


def _split(value):
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command(cls=SettingsCommand, groups=attack_specs.setting_groups)
@click.option("--model", "models", multiple=True, required=True,
              help="A run directory, .keras file or SavedModel; repeat for several.")
@click.option("--source-model", help="Model crafting transfer attacks (default: each model's "
                                      "undefended twin beside it).")
@click.option("--attacks", default="fgsm,ifgsm,rfgsm,pgd,cw,autoattack", show_default=True,
              cls=DerivedHelp,
              help_from=lambda: (
                  f"Comma-separated, from: {', '.join(attack_specs.names_selectable())} "
                  "(autoattack: APGD-CE, APGD-T, FAB-T, Square, per-image worst case; the EOT "
                  "'rand' version for models random at inference; autoattack-fast: not the "
                  "standard AutoAttack, short APGD-CE and APGD-T over the likeliest classes, "
                  "Square where gradients look masked, about a tenth of the passes)."))
@click.option("--eps", default="8/255", show_default=True,
              help="L-inf budget(s), comma-separated: 8/255 or 0.031.")
@click.option("--threat", default="white-box", show_default=True,
              help="Comma-separated: white-box, transfer, adaptive.")
@click.option("--n", type=int, default=1000, show_default=True, help="Test images per model.")
@click.option("--skip", type=int, default=0, show_default=True,
              help="Start after this many images of the seeded test sample: one shard of a long "
                   "evaluation (--n 1000 --skip 1000 is the second thousand of --n 2000).")
@click.option("--shard", metavar="K/N",
              help="Only the K-th of N contiguous parts of the --n images (K from 1): one job "
                   "of an array over hosts (Slurm: --shard $((SLURM_ARRAY_TASK_ID+1))/N); each "
                   "image's result is the one the whole run would give, and `fmfp-tf report` "
                   "joins the parts' folders.")
@click.option("--input-range", default="0,1", show_default=True, metavar="LOW,HIGH",
              help="The range the models take their inputs in, e.g. 0,255 for Keras's "
                   "applications with their preprocessing inside: the test images are mapped "
                   "onto it and --eps stays a share of the range (8/255 is 8 levels of 0-255).")
@click.option("--devices", default="auto", show_default=True, metavar="N|all|auto",
              help="Local devices the attacks run data-parallel over (JAX: a "
                   "keras.distribution.DataParallel mesh; TensorFlow: a MirroredStrategy). auto: "
                   "every accelerator, one CPU device when there is none; all: every local "
                   "device. Results do not depend on it, image for image.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output directory; finished cells are kept in OUT/cells as they finish, and "
                   "the same command again continues with the missing ones.")
@click.option("--dataset", help="Override the dataset recorded in the run directory.")
@click.option("--data-dir", help="Override the data directory recorded in the run directory.")
@click.option("--unsafe-load", is_flag=True,
              help="Allow models that hold code: Lambda layers, SavedModels (trusted authors only).")
def evaluate(models, source_model, attacks, eps, threat, n, skip, shard, input_range, devices,
             out, dataset, data_dir, unsafe_load, **settings):
    """Robust accuracy under attacks and threat models; writes results.json/.csv/.md and plots.

    Each (model, threat model, attack, eps) cell is written to OUT/cells the moment it is done:
    after a crash, Ctrl-C or an error, the same command continues with the missing cells.
    """
    import logging

    # each model gets its own traces of the attack graphs, which TensorFlow reports as retracing
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    from fmfp_tf.atomic import file_lock
    from fmfp_tf.attacks import devices as devices_lib
    from fmfp_tf.errors import Interrupted, UsageError
    from fmfp_tf.evaluation import EvaluationRequest, evaluate as run, load_entry, write_report
    from fmfp_tf.stopping import StopFlag
    from fmfp_tf.evaluation.cells import CellStore
    from fmfp_tf.evaluation.robustness import attacks_run
    from fmfp_tf.evaluation.threat_models import check_threats
    from fmfp_tf.settings import flag

    if n < 1:
        raise UsageError(f"--n must be a positive integer; got {n}")
    if skip < 0:
        raise UsageError(f"--skip must be 0 or more; got {skip}")
    device_count = devices_lib.count(devices)
    eps_texts = _split(eps)
    if not eps_texts:
        raise UsageError("--eps is empty: give at least one budget, e.g. --eps 8/255 (the "
                         "bounded attacks need one)")
    # every option is checked before the first model is loaded or attacked
    names = attack_specs.check_names(_split(attacks), "--attacks")
    _refuse_repeats("--attacks", names, names)
    threats = check_threats(_split(threat))
    _refuse_repeats("--threat", threats, threats)
    given = given_settings(attack_specs.setting_groups(), settings)
    request = EvaluationRequest.build(
        names, eps_texts, threats, n, skip, shard,
        settings=attack_specs.AttackSettings(spell=flag, **given), dataset=dataset,
        data_dir=data_dir, input_range=_input_range(input_range))
    if 0.0 in request.eps_values:
        raise UsageError("--eps 0 is no attack (the clean row already measures it); give "
                         "budgets above 0, e.g. --eps 8/255")
    _refuse_repeats("--eps", request.eps_values, eps_texts)
    _refuse_unread(given, attacks_run(names, threats, request.settings))
    _refuse_unused(given, names, threats, source_model)
    # the output folder is made (or refused) before hours of attacks, not after
    os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UsageError(f"{out}: output folder is not writable")
    cells_folder = os.path.join(out, "cells")
    if os.path.lexists(cells_folder) and not os.path.isdir(cells_folder):
        raise UsageError(f"{cells_folder}: is not a folder; the finished cells are kept there "
                         "(move it away, or choose another --out)")
    # one evaluation writes into a folder at a time: a second one would replace its results
    with file_lock(os.path.join(out, ".evaluate.lock"), out, "this evaluation folder is"), \
            devices_lib.data_parallel(device_count):
        if device_count > 1:
            click.echo(f"attacks run data-parallel over {device_count} devices "
                       f"({', '.join(devices_lib.local_devices()[0][:device_count])})", err=True)
        # loaded inside: on TensorFlow each replica gets its copy of the variables
        entries = [load_entry(path, unsafe=unsafe_load) for path in models]
        source = load_entry(source_model, unsafe=unsafe_load) if source_model else None
        # every finished cell is kept in OUT/cells at once: the same command again continues
        store = CellStore(cells_folder)
        kept = store.count()
        if kept:
            # only the cells of this very measurement are read back: a changed model file,
            # image set or setting gives other keys, measured anew (each read-back is logged)
            click.echo(f"{out}: {kept} finished cell(s) kept from an earlier run; those of "
                       "this very measurement (same model files, images and settings) are "
                       "read back, not attacked again", err=True)
        command = " ".join(["fmfp-tf"] + [shlex.quote(a) for a in sys.argv[1:]])

        def said(signum):  # what a signal does, said at once
            click.echo(f"signal {signum}: stopping after the running batch; finished cells "
                       f"stay in {cells_folder} (Ctrl-C again stops at once)", err=True)

        try:
            with StopFlag(on_signal=said, second_stops_now=True) as stop:
                records = run(entries, request=request, source=source,
                              log=lambda m: click.echo(m, err=True), crafted={}, store=store,
                              stop=stop)
        except Interrupted as stopped:
            stages = store.stages_kept()
            raise Interrupted(
                f"{stopped}; {store.count()} finished cell(s) kept in {cells_folder}"
                + (f" and the finished attacks of {stages} running ensemble cell(s)"
                   if stages else "") + f"; the same command continues: {command}") from None
        paths, warnings = write_report(records, out, command=command)
    for warning in warnings:
        click.echo(f"WARNING: {warning}", err=True)
    click.echo("\n".join(paths))


def _input_range(text):
    """(low, high) from 'LOW,HIGH'."""
    from fmfp_tf.attacks.common import check_bounds
    from fmfp_tf.errors import UsageError

    parts = _split(text)
    try:
        if len(parts) != 2:
            raise ValueError
        return check_bounds([float(part) for part in parts])
    except (ValueError, UsageError):
        raise UsageError(f"--input-range must be LOW,HIGH with LOW < HIGH (e.g. 0,255); got "
                         f"{text!r}") from None


def _refuse_repeats(flag_name, values, texts):
    """A value named twice would give two records of one measurement."""
    from fmfp_tf.errors import UsageError

    def same(a, b):  # budgets a millionth apart are one budget (0.0313725 is 8/255)
        return a == b if isinstance(a, str) else abs(a - b) < 1e-6

    for index, value in enumerate(values):
        for earlier in range(index):
            if same(values[earlier], value):
                also = "" if texts[earlier] == texts[index] else f" (as {texts[earlier]} too)"
                raise UsageError(f"{flag_name} names {texts[index]} twice{also}; give each once")


def _refuse_unused(given, names, threats, source_model):
    """The shared options no attack or threat model of this run would read are errors."""
    from fmfp_tf.errors import UsageError

    takes_precision = [name for name in attack_specs.names_selectable()
                       if "precision" in attack_specs.get(name).params(
                           attack_specs.AttackSettings(precision="bfloat16"), 8 / 255)]
    if given.get("precision", "float32") != "float32" and not set(names) & set(takes_precision):
        raise UsageError(f"--attack-precision {given['precision']} is given but no attack that "
                         f"takes it is run ({', '.join(takes_precision)}); add one to "
                         "--attacks, or drop the option")
    if source_model and "transfer" not in threats:
        raise UsageError("--source-model crafts the transfer attacks, but --threat has no "
                         "transfer; add it (--threat white-box,transfer) or drop the option")
    if "unbounded_check" in given and "white-box" not in threats:
        raise UsageError("--unbounded-check/--no-unbounded-check is a white-box check, but "
                         "--threat has no white-box; add it or drop the option")


def _refuse_unread(given, run):
    """No option is silently ignored: a setting that no attack run reads is an error."""
    from fmfp_tf import settings as settings_lib
    from fmfp_tf.errors import UsageError

    for cls in attack_specs.setting_groups()[1:]:
        readers = attack_specs.readers(cls)
        for field in settings_lib.fields(cls):
            if settings_lib.key(cls, field.name) in given and not set(readers) & run:
                raise UsageError(f"{settings_lib.flag(cls, field.name)} is given but no attack "
                                 f"that reads it is run ({', '.join(readers)}); add one to "
                                 "--attacks, or drop the option")
