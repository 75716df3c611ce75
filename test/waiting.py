"""Waiting on an event in a test: poll a condition until it holds, with a generous deadline (no bare sleeps)."""
from __future__ import annotations

import time
from typing import Any, Callable

POLL_S = 0.02


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy and return that; after ``timeout``
    seconds fail with ``what`` (what was awaited, or what went wrong)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout} s: {what or condition}")
