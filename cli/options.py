"""Option parsers shared by the commands."""
import click


def parse_size(ctx, param, value):
    """'20' or '20%' -> '20%' (the paper's z: percent of the side), '6px' -> '6px', '0.2' -> '20%'."""
    if value is None:
        return None
    from fmfp_tf import sizes

    try:
        return sizes.parse(value, bare="percent", name="size").text
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
