"""Option parsers shared by the commands."""
import click


def parse_size(ctx, param, value):
    """'20' -> 20 (pixels), '0.5' -> 0.5 (fraction); anything else is a usage error."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number") from None
    if number <= 0:
        raise click.BadParameter(f"{value!r} must be > 0 (pixels, or a fraction in (0, 1))")
    if number >= 1:
        if not number.is_integer():
            raise click.BadParameter(f"{value!r}: sizes >= 1 are whole pixels")
        return int(number)
    return number
