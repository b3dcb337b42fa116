"""Attack budgets: one reader of eps for every front end (CLI, YAML configs, table files, the
attacks' arguments), so "8/255" means the same everywhere. No framework import: configs read it.

Example:

>>> parse_eps("8/255") == 8 / 255, parse_eps(0.5)
(True, 0.5)
"""
import fractions
import math
import numbers

from fmfp_tf.errors import UsageError


def parse_eps(value):
    """An L-inf/L2 budget from a number or a string like '8/255' or '0.031'."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(fractions.Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"eps {value!r} is not a number or a fraction like 8/255") from None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    else:
        raise UsageError(f"eps must be a number or a string like '8/255'; got {value!r}")
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise UsageError(
            f"eps {value!r} = {number:g} is outside [0, 1]; images are in [0, 1], so a budget "
            "above 1 is meaningless"
        )
    return number
