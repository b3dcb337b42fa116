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


def setting(default, help, minimum=None, maximum=None, above=None, choices=None, flag=None,
            aliases=()):
    """A settings field: its default, one line of help, an inclusive range (or `above`, an
    exclusive lower bound) or choices, and
    optionally a flag other than the derived `--prefix-name` (plus older spellings)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "minimum": minimum, "maximum": maximum, "above": above, "choices": choices,
        "flag": flag,
        "aliases": tuple(aliases)})


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


def expected(field):
    """What a field accepts, in words."""
    meta = field.metadata
    if meta["choices"]:
        return "one of " + ", ".join(map(str, meta["choices"]))
    kind = {int: "an integer", float: "a finite number", bool: "true or false",
            str: "a string"}[field.type]
    low, high = meta["minimum"], meta["maximum"]
    if meta["above"] is not None:
        return f"{kind} > {meta['above']}"
    if low is not None and high is not None:
        return f"{kind} in {low}..{high}"
    return kind if low is None else f"{kind} >= {low}"


def build(cls, values, spell=None):
    """`cls(**values)`, each value checked first so that an error names it as `spell` does."""
    by_name = {f.name: f for f in fields(cls)}
    for name, value in values.items():
        if not _valid(value, by_name[name]):
            raise UsageError(f"{(spell or key)(cls, name)} = {value!r} is invalid; expected "
                             f"{expected(by_name[name])}")
    # 0 and 0.0 must record (and key a kept cell) alike
    values = {name: float(value) if by_name[name].type is float else value
              for name, value in values.items()}
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


def _valid(value, field):
    meta = field.metadata
    if meta["choices"]:
        return value in meta["choices"]
    kind = field.type
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        return False
    if kind is float and not math.isfinite(value):
        return False
    return ((meta["minimum"] is None or value >= meta["minimum"])
            and (meta["above"] is None or value > meta["above"])
            and (meta["maximum"] is None or value <= meta["maximum"]))
