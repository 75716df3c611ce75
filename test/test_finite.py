"""The shared finite-number check for configuration values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from magma_ros.finite import finite_float, is_finite_number


@pytest.mark.parametrize("value", [0, -3, 2.5, np.float32(1.5), np.int64(7), 10**300])
def test_finite_numbers_pass(value):
    assert is_finite_number(value)
    assert finite_float(value, "x") == float(value)


@pytest.mark.parametrize(("value", "message"), [
    (True, r"^limits\.step: expected a number, got True$"),
    ("0.1", r"^limits\.step: expected a number, got '0\.1'$"),
    (None, r"^limits\.step: expected a number, got None$"),
    (10**400, r"^limits\.step: number too large for a float \(1329 bits\)$"),
    (math.nan, r"^limits\.step: must be finite, got nan$"),
    (-math.inf, r"^limits\.step: must be finite, got -inf$"),
    (np.float64("inf"), r"^limits\.step: must be finite, got "),
])
def test_everything_else_is_named_with_its_place(value, message):
    assert not is_finite_number(value)
    with pytest.raises(ValueError, match=message):
        finite_float(value, "limits.step")


def test_the_caller_chooses_the_error_type():
    class ConfigError(ValueError):
        pass

    with pytest.raises(ConfigError, match="q01"):
        finite_float(math.nan, "q01", ConfigError)
