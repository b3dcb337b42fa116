"""Settings declared once: a frozen dataclass whose fields carry their help text and range, from
which validation, the CLI's options and table-file keys are derived.

Each attack declares its own group beside its function (`attacks.pgd.PGDSettings`, prefix
"pgd": the key `pgd_steps`, the flag `--pgd-steps`).

Example:

>>> import dataclasses, typing
>>> @dataclasses.dataclass(frozen=True)
... class Toy(Settings):
...     prefix: typing.ClassVar[str] = "toy"
...     steps: int = setting(10, "iterations", minimum=1)
>>> Toy(steps=3).steps, key(Toy, "steps"), flag(Toy, "steps")
(3, 'toy_steps', '--toy-steps')
"""
import dataclasses
import math
import typing

from fmfp_tf.errors import UsageError


# the most iterations, queries, targets or restarts any count setting takes: beyond it a run
# would plan years (--square-queries 1e21), so it is a mistyped value, refused in one line
MAX_COUNT = 10 ** 7
# a batch beyond int32 tensors, and beyond any memory
MAX_BATCH_SIZE = 2 ** 20


def setting(default, help, minimum=None, maximum=None, above=None, below=None, choices=None,
            flag=None, aliases=(), parse=None, coerce=None, expected=None, multiple=False,
            metavar=None, shown=None, unread_when=None):
    """A settings field: its default, one line of help, an inclusive range (`above` / `below`:
    exclusive bounds) or choices (a tuple, or a function returning the names registered now),
    and optionally a flag other than the derived `--prefix-name` (plus older spellings).

    A field of a type beyond int, float, bool and str (optional ones included) gives `coerce`
    (value -> value, ValueError when wrong) and `expected` (what it accepts, in words);
    `parse` reads the CLI's text (ValueError with a one-line message when wrong); `multiple`
    makes the option repeatable (`parse` then gets the tuple of texts); `metavar` names the
    option's value in help, `shown` the default as help shows it ("8/255"). `unread_when`
    (field, value): nothing reads this setting while that field of the same group holds that
    value (ema_decay without averaging): another value than the default is then refused, and
    `unread` names it, so fingerprints and the CLI leave it out."""
    return dataclasses.field(default=default, metadata={
        "help": help, "minimum": minimum, "maximum": maximum, "above": above, "below": below,
        "choices": choices, "flag": flag, "aliases": tuple(aliases), "parse": parse,
        "coerce": coerce, "expected": expected, "multiple": multiple, "metavar": metavar,
        "shown": shown, "unread_when": unread_when})


class Settings:
    """Base of a settings dataclass: checks every field on construction."""

    prefix: typing.ClassVar[str] = ""

    def __post_init__(self):
        check(self)


def fields(cls):
    """The settings fields of a settings class (or instance), in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def key(cls, name):
    """The flat key of field `name`: `prefix_name` (table files, `AttackSettings(**keys)`)."""
    return f"{cls.prefix}_{name}" if cls.prefix else name


def flag(cls, name):
    """The CLI flag of field `name`."""
    field = next(f for f in fields(cls) if f.name == name)
    return field.metadata["flag"] or "--" + key(cls, name).replace("_", "-")


def base_type(field):
    """(the field's type without Optional, whether None is accepted)."""
    kind = field.type
    if typing.get_origin(kind) is typing.Union:
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


def choices(field):
    """The names a field accepts now (a registry's, plugins included), or None."""
    names = field.metadata.get("choices")
    return tuple(names()) if callable(names) else names


def expected(field):
    """What a field accepts, in words."""
    meta = field.metadata
    kind, optional = base_type(field)
    if meta.get("expected"):
        text = meta["expected"]
    elif choices(field):
        text = "one of " + ", ".join(map(str, choices(field)))
    else:
        text = _range_text({int: "an integer", float: "a finite number", bool: "true or false",
                            str: "a string"}[kind], meta)
    return f"{text} or null" if optional else text


def _range_text(kind, meta):
    low, high = meta["minimum"], meta["maximum"]
    above, below = meta["above"], meta.get("below")
    if above is not None and below is not None:
        return f"{kind} in ({above}, {below})"
    if above is not None and high is not None:
        return f"{kind} in ({above}, {high}]"
    if low is not None and below is not None:
        return f"{kind} in [{low}, {below})"
    if above is not None:
        return f"{kind} > {above}"
    if low is not None and high is not None:
        return f"{kind} in {low}..{high}"
    if below is not None:
        return f"{kind} < {below}"
    return kind if low is None else f"{kind} >= {low}"


def invalid(key, value, expected):
    """The one-line error every settings check raises: which setting, its value, what it takes."""
    return UsageError(f"{key} = {value!r} is invalid; expected {expected}")


def build(cls, values, spell=None):
    """`cls(**values)`, each value checked first so that an error names it as `spell` does."""
    by_name = {f.name: f for f in fields(cls)}
    for name, value in values.items():
        if not _valid(value, by_name[name]):
            raise invalid((spell or key)(cls, name), value, expected(by_name[name]))
    # 0 and 0.0 must record (and key a kept cell) alike
    values = {name: float(value) if base_type(by_name[name])[0] is float and value is not None
              else value for name, value in values.items()}
    return cls(**values)


def check(instance, spell=None):
    """Raises a UsageError naming the first field whose value is of the wrong type or out of its
    range; `spell(cls, name)` names it (default: its flat key)."""
    spell = spell or key
    for field in fields(instance):
        value = getattr(instance, field.name)
        if not _valid(value, field):
            raise UsageError(f"{spell(type(instance), field.name)} = {value!r} is invalid; "
                             f"expected {expected(field)}")
        if field.name in unread(instance) and value != field.default:
            switch, off = field.metadata["unread_when"]
            raise UsageError(f"{spell(type(instance), field.name)} = {value!r} is invalid; "
                             f"expected the default ({field.default!r}) while "
                             f"{spell(type(instance), switch)} is {off}")


def unread(instance):
    """The names of `instance`'s fields that nothing reads given its other values (their
    `unread_when` holds)."""
    return [field.name for field in fields(instance)
            if field.metadata.get("unread_when") is not None
            and getattr(instance, field.metadata["unread_when"][0])
            == field.metadata["unread_when"][1]]


def _valid(value, field):
    meta = field.metadata
    kind, optional = base_type(field)
    if value is None:
        return optional
    if meta.get("coerce"):
        try:
            return meta["coerce"](value) == value
        except (ValueError, TypeError):
            return False
    if choices(field):
        return value in choices(field)
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        return False
    if kind is float and not math.isfinite(value):
        return False
    return ((meta["minimum"] is None or value >= meta["minimum"])
            and (meta["above"] is None or value > meta["above"])
            and (meta.get("below") is None or value < meta["below"])
            and (meta["maximum"] is None or value <= meta["maximum"]))


def coerce(value, field):
    """`value` in the field's own type where it is one loosely (an integer for a float, 15.0
    for an integer, a list for a tuple), as YAML and JSON give them; anything else unchanged
    for `check` to refuse."""
    kind, _ = base_type(field)
    if value is None:
        return None
    if field.metadata.get("coerce"):
        try:
            return field.metadata["coerce"](value)
        except (ValueError, TypeError):
            return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
