"""The size of a defense (FM's square side, FP's largest shrink): one parser for every front end.

A bare number >= 1 has one meaning per kind of front end, and none where two could meet:

- **The layers** (`FeatureMask(size=...)`, `defend(...)`): Keras's convention, an int is pixels
  and a float in (0, 1) a fraction of the shorter image side.
- **CLI, YAML configs and table files**: a bare number >= 1 is the paper's z, a *percentage* of
  the shorter image side (`--size 20` hides a square of 20 % of the side: 6 px of 32).
- **`TrainConfig(size=...)`**, which stands between the two, refuses a bare number >= 1: it
  takes `"20%"`, `"6px"` or a fraction, so a config means the same in code and in YAML.

Both accept `"20%"` (percent), `"6px"` (pixels) and `"0.2"` (a fraction), so code and configs can
say the same thing. A size resolves to pixels against the model input as `round(fraction * side)`
(at least 1 px), the rule the layers apply. No TensorFlow here: the CLI parses sizes before it
imports anything heavy.
"""
import dataclasses
import numbers
import re

import numpy as np

BARE = ("pixels", "percent", "refused")
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%|px)?\s*$")


@dataclasses.dataclass(frozen=True)
class Size:
    """A validated size: `pixels` (an int) or `fraction` (of the shorter side, in (0, 1))."""

    value: float
    unit: str  # "px" or "fraction"

    @property
    def layer_value(self):
        """What the layers store: an int of pixels or a float fraction (Keras's convention)."""
        return int(self.value) if self.unit == "px" else float(self.value)

    @property
    def text(self):
        """The canonical spelling: '6px' or '20%' (what configs and metrics record)."""
        if self.unit == "px":
            return f"{int(self.value)}px"
        return f"{round(self.value * 100, 6):g}%"

    def pixels(self, side):
        """Pixels on an image whose shorter side is `side`."""
        if self.unit == "px":
            return int(self.value)
        return max(1, int(round(self.value * side)))

    def __str__(self):
        return self.text


def parse(value, bare="pixels", name="size"):
    """A `Size` from an int, a float, a `Size` or a string; `bare` says what a bare number >= 1 is.

    `bare="pixels"` is the layers' convention (an int is pixels; a float >= 1 is refused, as in
    Keras), `bare="percent"` the CLI's and the config files' (the paper's z), `bare="refused"`
    `TrainConfig`'s (a unit is required). Raises ValueError with a one-line message naming
    `name` and the value.
    """
    if bare not in BARE:
        raise ValueError(f"bare must be one of {', '.join(BARE)}; got {bare!r}")
    if isinstance(value, Size):
        return value
    expected = ("an int of pixels, a fraction in (0, 1), or a string such as '20%' or '6px'"
                if bare == "pixels" else
                "a percent of the image side (20 or 20%), pixels (6px) or a fraction in (0, 1)"
                if bare == "percent" else
                "'20%' (percent of the image side), '6px' (pixels) or a fraction in (0, 1)")
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(f"{name} {value!r} is not a size; expected {expected}")
        number, unit = float(match.group(1)), match.group(2)
        if unit is None and number >= 1:
            _refuse_bare(bare, name, value, number)
            unit = "%" if bare == "percent" else "px"
        given = value.strip()
    elif isinstance(value, numbers.Real):
        number, unit, given = float(value), None, value
        if not np.isfinite(number):
            raise ValueError(f"{name} must be finite; got {value!r}")
        if number >= 1:
            _refuse_bare(bare, name, value, number)
            if bare == "percent":
                unit = "%"
            elif isinstance(value, numbers.Integral):
                unit = "px"
            else:
                raise ValueError(
                    f"{name} {value!r}: a float is a fraction of the image side and must lie in "
                    "(0, 1); use an int for pixels or '20%' for a percent")
    else:
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    if unit == "px":
        if number < 1 or not number.is_integer():
            raise ValueError(f"{name} {given!r}: pixels must be a whole number >= 1")
        return Size(float(int(number)), "px")
    if unit == "%":
        if not 0 < number < 100:
            raise ValueError(f"{name} {given!r}: a percent of the image side must lie in (0, 100)")
        return Size(number / 100.0, "fraction")
    if not 0 < number < 1:
        raise ValueError(f"{name} {given!r} must be > 0; expected {expected}")
    return Size(number, "fraction")


def _refuse_bare(bare, name, value, number):
    if bare == "refused":
        raise ValueError(f"{name} = {value!r} has no unit; write '{number:g}%' (percent of the "
                         f"image side, as in YAML and the CLI) or '{number:g}px' (pixels)")


def describe(value, side):
    """'20% (6 px)' for a size on an image whose shorter side is `side`."""
    size = parse(value)
    if size.unit == "px":
        return f"{size.text} ({100 * size.value / side:.3g}% of {side} px)"
    return f"{size.text} ({size.pixels(side)} px of {side})"
