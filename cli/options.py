"""Option parsers shared by the commands."""
import click


def parse_size(ctx, param, value):
    """'20' -> 20 (pixels), '0.5' -> 0.5 (fraction), '20%' -> 0.2 (percent of the side)."""
    if value is None:
        return None
    text = value.strip()
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a size: expected pixels (20), a fraction (0.2) or a percent of the "
            "side (20%)") from None
    if percent:
        if not 0 < number < 100:
            raise click.BadParameter(f"{value!r}: a percent of the side must lie in (0%, 100%)")
        return number / 100.0
    if number <= 0:
        raise click.BadParameter(f"{value!r} must be > 0 (pixels, a fraction in (0, 1), or 20%)")
    if number >= 1:
        if not number.is_integer():
            raise click.BadParameter(f"{value!r}: sizes >= 1 are whole pixels")
        return int(number)
    return number
