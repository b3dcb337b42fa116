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


def parse_layer_options(ctx, param, values):
    """('interpolation=nearest', 'value_range=[0, 255]') -> {'interpolation': 'nearest',
    'value_range': [0, 255]}; each value is read as YAML (numbers, lists, true/false)."""
    if not values:
        return None
    import yaml

    options = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip().isidentifier():
            raise click.BadParameter(f"{text!r}: expected KEY=VALUE, e.g. interpolation=nearest")
        if key.strip() in options:
            raise click.BadParameter(f"{key.strip()} is given twice; give each option once")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise click.BadParameter(f"{text!r}: the value is not readable") from None
    return options
