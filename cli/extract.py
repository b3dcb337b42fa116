"""`fmfp-tf extract`."""
import click


MAX_GIB = 2.0 ** 40


def _gib(value):
    # a plain float and this check: FloatRange lets nan through and prints its bounds in --help
    if not 0 < value <= MAX_GIB:  # false for nan too
        raise click.BadParameter(f"must be a number of GiB > 0 and at most 2^40; got {value}",
                                 param_hint="'--max-size'")
    return value


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory to create with the archive's contents.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--max-size", type=float, metavar="GIB", default=8.0, show_default=True,
              callback=lambda ctx, param, value: _gib(value),
              help="Refuse archives whose members add up to more GiB.")
def extract(archive, out, overwrite, max_size):
    """Safely extract an official dataset archive (zip or tar) into a new directory.

    Members with absolute paths, '..' or links are refused; nothing is written then.
    """
    from fmfp_tf.data.archives import extract as run_extract

    click.echo(run_extract(archive, out, overwrite=overwrite, max_bytes=int(max_size * 2**30)))
