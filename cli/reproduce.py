"""`fmfp-tf reproduce`."""
import os

import click


def _data_dir_pairs(values):
    pairs = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r}: expected DATASET=DIR, e.g. belgium=/data/BelgiumTSC",
                                     param_hint="--data-dir")
        pairs[name.strip()] = path
    return pairs


@click.command()
@click.argument("tables", nargs=-1, required=True)
@click.option("--quick", is_flag=True,
              help="Each table's `quick:` section: its fastest columns, short training (GTSRB: 2 "
                   "epochs on every training image) and 100 evaluated images; about 7 minutes "
                   "for all four tables on 2 cores.")
@click.option("--data-root", envvar="FMFP_TF_DATA_ROOT", show_envvar=True,
              help="Folder holding gtsrb/, att_faces/ (ORL), yalefaces/ (Yale), belgium/ "
                   "(e.g. ../shared/data); without it and --data-dir, columns that need files "
                   "are reported as 'not run: data absent'.")
@click.option("--data-dir", "data_dirs", multiple=True, metavar="DATASET=DIR",
              help="Where one dataset lives, e.g. belgium=/data/BelgiumTSC; repeatable.")
@click.option("--out", default="reproduce-out", show_default=True,
              type=click.Path(file_okay=False), help="Reports go to OUT/tableN/.")
@click.option("--cache", "models_dir", type=click.Path(file_okay=False),
              help="Trained-model cache, keyed by config fingerprint (default OUT/models).")
def reproduce(tables, quick, data_root, data_dirs, out, models_dir):
    """Reproduce paper tables: TABLES is table3, table4, table5, table6, all, or YAML paths.

    Trains what each table needs (reusing cached models), evaluates under the paper's protocol and
    white-box, and writes OUT/tableN/report.md, cells.csv, results.json and figure.png.

    Example: fmfp-tf reproduce table5 --quick
    """
    import logging
    import time

    from fmfp_tf.cli.options import needs_tensorflow

    needs_tensorflow("reproduce")  # it trains the models its tables need

    # each model gets its own traces of the attack graphs, which TensorFlow reports as retracing
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    from fmfp_tf.reproduction import reproduce as run

    started = time.time()

    def log(message):
        elapsed = int(time.time() - started)
        click.echo(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", err=True)

    if data_root is not None and not os.path.isdir(data_root):
        raise click.BadParameter(f"{data_root!r} is not a directory", param_hint="'--data-root'")
    if data_root is None:
        click.echo("no --data-root: columns without --data-dir are reported as 'not run: data "
                   "absent'", err=True)
    paths = run(list(tables), out, quick=quick, data_root=data_root,
                data_dirs=_data_dir_pairs(data_dirs), models_dir=models_dir,
                log=log)
    click.echo("\n".join(paths))
