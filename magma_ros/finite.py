"""The one finite-number check for configuration values (YAML, JSON, parameters, options)."""
from __future__ import annotations

import math
import numbers
from typing import Any


def is_finite_number(value: Any) -> bool:
    """True for a real number (Python or numpy, not a bool) that is finite as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def finite_float(value: Any, where: str, error: type[Exception] = ValueError) -> float:
    """``value`` as a float, or ``error`` with a message that starts with ``where`` and says what is
    wrong: not a number, too large for a float, or not finite (nan, inf)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{where}: expected a number, got {value!r:.60}")
    try:
        number = float(value)
    except OverflowError:
        raise error(f"{where}: number too large for a float ({int(value).bit_length()} bits)") from None
    if not math.isfinite(number):
        raise error(f"{where}: must be finite, got {value!r}")
    return number
