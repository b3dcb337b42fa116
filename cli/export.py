"""`fmfp-tf export`."""
import click


@click.command()
@click.option("--model", required=True, help="A run directory or .keras file.")
@click.option("--out", "base", required=True, type=click.Path(file_okay=False),
              help="Model base directory of TF Serving (--model_base_path's parent).")
@click.option("--name", required=True, help="Model name: the export goes to OUT/NAME/VERSION/.")
@click.option("--version", type=int, help="Version number (default: the next free one).")
@click.option("--force", is_flag=True, help="Replace an existing version.")
@click.option("--unsafe-load", is_flag=True,
              help="Allow models that hold code: Lambda layers, SavedModels (trusted authors only).")
def export(model, base, name, version, force, unsafe_load):
    """Export a trained model as a SavedModel laid out for TF Serving."""
    from fmfp_tf.cli.options import needs_tensorflow

    needs_tensorflow("export")
    from fmfp_tf.export import export as run_export

    click.echo(run_export(model, base, name, version=version, force=force, unsafe=unsafe_load))
