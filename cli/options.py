"""Option parsers shared by the commands."""
import click


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
    """One click option per settings field of `groups`, derived now (plugins' names in the
    choices shown). A field with `parse` reads the typed text through it (a ValueError or
    UsageError becomes click's one-line error); a field with choices from a registry is checked
    where the settings are built, so its message lists the names registered then."""
    from fmfp_tf import settings

    options = []
    for cls in groups:
        for field in settings.fields(cls):
            name, flag, meta = settings.key(cls, field.name), settings.flag(cls, field.name), \
                field.metadata
            options.append(_option(field, name, flag, meta, settings))
    return options


def _option(field, name, flag, meta, settings):
    kind, _ = settings.base_type(field)
    names = settings.choices(field)
    shown = (f" One of {', '.join(map(str, names))}." if callable(meta["choices"]) else "")
    default = ("" if field.default is None else
               f" [default: {meta.get('shown') or _shown(field.default)}]")
    help_text = f"{meta['help']}.{shown}{default}"
    if kind is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", name], default=None, help=help_text)
    if meta.get("parse"):
        return click.Option([flag, *meta["aliases"], name], default=None, help=help_text,
                            multiple=meta.get("multiple", False), metavar=meta.get("metavar"),
                            callback=_parsed(meta["parse"], meta.get("multiple", False)))
    if names and not callable(meta["choices"]):
        kind = click.Choice(names)
    return click.Option([flag, *meta["aliases"], name], type=kind, default=None, help=help_text)


def _parsed(parse, multiple):
    def callback(ctx, param, value):
        if value is None or (multiple and not value):
            return None
        from fmfp_tf.errors import UsageError

        try:
            return parse(value)
        except (ValueError, UsageError) as error:
            raise click.BadParameter(str(error)) from None
    return callback


def _shown(value):
    if isinstance(value, tuple):
        return "x".join(map(str, value))
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
