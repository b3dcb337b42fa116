"""`fmfp-tf report`: joins the folders of a split evaluation (`evaluate --shard K/N` on many
hosts) into one results.json/csv/md with intervals and plots, or re-renders one folder."""
import os
import sys

import click


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Where the joined results.json/.csv/.md and plots go (a new folder, or the "
                   "one folder given, to re-render it).")
def report(folders, out):
    """Join evaluation folders (shards of one evaluation) into one report.

    Each FOLDER is the --out of a finished `fmfp-tf evaluate`; their kept cells supply the
    per-image results, so the worst case is recomputed per image. Shards of different models,
    settings, eps, seeds or samples, shards holding the same images, and a missing shard of a
    --shard K/N split are refused.
    """
    from fmfp_tf.errors import UsageError
    from fmfp_tf.evaluation import write_report
    from fmfp_tf.evaluation.shards import join

    real = [os.path.realpath(folder) for folder in folders]
    if len(set(real)) != len(real):
        raise UsageError("a folder is given twice; give each shard folder once")
    if len(folders) > 1 and os.path.realpath(out) in real:
        raise UsageError(f"--out {out} is one of the shard folders; its own results would be "
                         "replaced by the joined ones: give a new folder")
    records = join(list(folders))
    paths, warnings = write_report(records, out, command=" ".join(["fmfp-tf"] + sys.argv[1:]))
    for warning in warnings:
        click.echo(f"WARNING: {warning}", err=True)
    click.echo("\n".join(paths))
