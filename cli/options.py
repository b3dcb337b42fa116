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


class SettingsCommand(click.Command):
    """A command with one option per field of each settings class `groups()` returns, derived
    when the command parses, so that classes registered by plugins (loaded by the group's
    --plugin) get their options too. A field's option is named by `fmfp_tf.settings.flag` (a
    bool gets --x/--no-x), its parameter is the field's flat key, and its default None, so that
    `given_settings` sees only what was typed."""

    def __init__(self, *args, groups, **kwargs):
        super().__init__(*args, **kwargs)
        self.groups = groups

    def get_params(self, ctx):
        params = super().get_params(ctx)
        taken = {param.name for param in params}
        derived = [option for option in settings_params(self.groups()) if option.name not in taken]
        return params[:-1] + derived + params[-1:]  # --help stays last


def settings_params(groups):
    from fmfp_tf import settings

    options = []
    for cls in groups:
        for field in settings.fields(cls):
            name, flag, meta = settings.key(cls, field.name), settings.flag(cls, field.name), \
                field.metadata
            help_text = f"{meta['help']} [default: {_shown(field.default)}]"
            if field.type is bool:
                options.append(click.Option([f"{flag}/--no-{flag[2:]}", name], default=None,
                                            help=help_text))
                continue
            kind = (click.Choice(meta["choices"]) if meta["choices"] else
                    {int: int, float: float, str: str}[field.type])
            options.append(click.Option([flag, *meta["aliases"], name], type=kind, default=None,
                                        help=help_text))
    return options


def _shown(value):
    return str(value).lower() if isinstance(value, bool) else value


def given_settings(groups, values):
    """{flat key: value} of the settings options that were given (not None) in `values`."""
    from fmfp_tf import settings

    keys = {settings.key(cls, field.name) for cls in groups for field in settings.fields(cls)}
    return {key: value for key, value in values.items() if key in keys and value is not None}


def needs_tensorflow(command):
    """`fmfp-tf COMMAND` runs on TensorFlow (its training loop, SavedModels, MTCNN): one line
    when it is not installed or Keras runs on another backend, before anything is read."""
    import importlib.util
    import os

    from fmfp_tf.errors import UsageError

    if importlib.util.find_spec("tensorflow") is None:
        raise UsageError(f"fmfp-tf {command} needs TensorFlow, which is not installed: pip "
                         "install 'fmfp-tf[tensorflow]' (the layers, the attacks and fmfp-tf "
                         "evaluate/report run without it)")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise UsageError(f"fmfp-tf {command} runs on Keras's TensorFlow backend; KERAS_BACKEND "
                         f"is {os.environ.get('KERAS_BACKEND', keras.backend.backend())}: unset "
                         "it or set it to tensorflow for this command")


class DerivedHelp(click.Option):
    """An option whose help is written when it is shown (`help_from()`), after plugins loaded,
    so a list of names in it includes what plugins registered."""

    def __init__(self, *args, help_from, **kwargs):
        super().__init__(*args, **kwargs)
        self.help_from = help_from

    def get_help_record(self, ctx):
        self.help = self.help_from()
        return super().get_help_record(ctx)
