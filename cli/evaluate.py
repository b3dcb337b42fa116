"""`fmfp-tf evaluate`."""
import os
import sys

import click

from fmfp_tf.evaluation.attack_specs import names_selectable


def _split(value):
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command()
@click.option("--model", "models", multiple=True, required=True,
              help="A run directory, .keras file or SavedModel; repeat for several.")
@click.option("--source-model", help="Model crafting transfer attacks (default: each model's "
                                      "undefended twin beside it).")
@click.option("--attacks", default="fgsm,ifgsm,rfgsm,pgd,cw,autoattack", show_default=True,
              help=f"Comma-separated, from: {', '.join(names_selectable())} (autoattack: "
                   "APGD-CE, APGD-T, FAB-T, Square, per-image worst case; the EOT 'rand' "
                   "version for models random at inference).")
@click.option("--eps", default="8/255", show_default=True,
              help="L-inf budget(s), comma-separated: 8/255 or 0.031.")
@click.option("--threat", default="white-box", show_default=True,
              help="Comma-separated: white-box, transfer, adaptive.")
@click.option("--n", type=int, default=1000, show_default=True, help="Test images per model.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output directory; finished cells are kept in OUT/cells as they finish, and "
                   "the same command again continues with the missing ones.")
@click.option("--dataset", help="Override the dataset recorded in the run directory.")
@click.option("--data-dir", help="Override the data directory recorded in the run directory.")
@click.option("--pgd-steps", type=int, default=20, show_default=True)
@click.option("--pgd-restarts", type=int, default=1, show_default=True)
@click.option("--cw-iterations", type=int, default=100, show_default=True)
@click.option("--cw-binary-steps", type=int, default=5, show_default=True)
@click.option("--cw-learning-rate", type=float, default=0.01, show_default=True)
@click.option("--cw-initial-const", type=float, default=0.01, show_default=True)
@click.option("--apgd-steps", type=int, default=100, show_default=True)
@click.option("--apgd-restarts", type=int, default=1, show_default=True)
@click.option("--apgd-target-classes", type=int, default=9, show_default=True,
              help="APGD-T and FAB-T: one targeted run per class ranked 2nd.. by the clean "
                   "logits.")
@click.option("--square-queries", type=int, default=5000, show_default=True)
@click.option("--eot-samples", type=int, default=10, show_default=True)
@click.option("--attack-precision", type=click.Choice(["float32", "bfloat16"]),
              default="float32", show_default=True,
              help="bfloat16: APGD's and FAB-T's steps on a bfloat16 twin of the model; every "
                   "success is decided in float32 on the model itself.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--unsafe-load", is_flag=True,
              help="Allow models that hold code: Lambda layers, SavedModels (trusted authors only).")
def evaluate(models, source_model, attacks, eps, threat, n, out, dataset, data_dir, pgd_steps,
             pgd_restarts, cw_iterations, cw_binary_steps, cw_learning_rate, cw_initial_const,
             apgd_steps, apgd_restarts, apgd_target_classes, square_queries, eot_samples,
             attack_precision, batch_size, seed, unsafe_load):
    """Robust accuracy under attacks and threat models; writes results.json/.csv/.md and plots.

    Each (model, threat model, attack, eps) cell is written to OUT/cells the moment it is done:
    after a crash, Ctrl-C or an error, the same command continues with the missing cells.
    """
    import logging

    # each model gets its own traces of the attack graphs, which TensorFlow reports as retracing
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    from fmfp_tf.attacks import parse_eps
    from fmfp_tf.errors import UsageError
    from fmfp_tf.evaluation import AttackSettings, evaluate as run, load_entry, write_report

    if n < 1:
        raise UsageError(f"--n must be a positive integer; got {n}")
    eps_values = [parse_eps(e) for e in _split(eps)]
    if not eps_values:
        raise UsageError("--eps is empty: give at least one budget, e.g. --eps 8/255 (the "
                         "bounded attacks need one)")
    for name, value in (("--pgd-steps", pgd_steps), ("--pgd-restarts", pgd_restarts),
                        ("--cw-iterations", cw_iterations), ("--eot-samples", eot_samples),
                        ("--cw-binary-steps", cw_binary_steps), ("--apgd-steps", apgd_steps),
                        ("--apgd-restarts", apgd_restarts),
                        ("--apgd-target-classes", apgd_target_classes),
                        ("--square-queries", square_queries),
                        ("--batch-size", batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be a positive integer; got {value}")
    from fmfp_tf.config import MAX_BATCH_SIZE

    if batch_size > MAX_BATCH_SIZE:
        raise UsageError(f"--batch-size must lie in 1..{MAX_BATCH_SIZE}; got {batch_size}")
    import math

    for name, value in (("--cw-learning-rate", cw_learning_rate),
                        ("--cw-initial-const", cw_initial_const)):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{name} must be a finite number > 0; got {value}")
    from fmfp_tf.evaluation.attack_specs import check_names
    from fmfp_tf.evaluation.threat_models import check_threats

    # every option is checked before the first model is loaded or attacked
    check_names(_split(attacks), "--attacks")
    check_threats(_split(threat))
    settings = AttackSettings(pgd_steps=pgd_steps, pgd_restarts=pgd_restarts,
                              cw_iterations=cw_iterations, cw_binary_search_steps=cw_binary_steps,
                              cw_learning_rate=cw_learning_rate,
                              cw_initial_const=cw_initial_const, apgd_steps=apgd_steps,
                              apgd_restarts=apgd_restarts,
                              apgd_target_classes=apgd_target_classes,
                              square_queries=square_queries, eot_samples=eot_samples,
                              precision=attack_precision, batch_size=batch_size, seed=seed)
    # the output folder is made (or refused) before hours of attacks, not after
    os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UsageError(f"{out}: output folder is not writable")
    entries = [load_entry(path, unsafe=unsafe_load) for path in models]
    source = load_entry(source_model, unsafe=unsafe_load) if source_model else None
    from fmfp_tf.evaluation.cells import CellStore

    # every finished cell is kept in OUT/cells at once: the same command again continues
    store = CellStore(os.path.join(out, "cells"))
    kept = store.count()
    if kept:
        click.echo(f"{out}: {kept} finished cell(s) of an earlier run are read back, "
                   "not attacked again", err=True)
    records = run(entries, _split(attacks), eps_values, _split(threat), n, source, settings,
                  dataset, data_dir, log=lambda m: click.echo(m, err=True), crafted={},
                  store=store)
    paths, warnings = write_report(records, out, command=" ".join(["fmfp-tf"] + sys.argv[1:]))
    for warning in warnings:
        click.echo(f"WARNING: {warning}", err=True)
    click.echo("\n".join(paths))
