"""`fmfp-tf extract`."""
import click


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory to create with the archive's contents.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
def extract(archive, out, overwrite):
    """Safely extract an official dataset archive (zip or tar) into a new directory.

    Members with absolute paths, '..' or links are refused; nothing is written then.
    """
    from fmfp_tf.data.archives import extract as run_extract

    click.echo(run_extract(archive, out, overwrite=overwrite))
