"""A one-line progress bar with rate and ETA on stderr (a line every few seconds when not a TTY),
shared by the tools (eval, replay, sim-eval)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for an ETA."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Shows ``done/total`` units, the rate and the time left."""

    def __init__(self, total: int, label: str, unit: str = "frames", stream: TextIO | None = None,
                 enabled: bool = True, width: int = 24) -> None:
        self.total, self.label, self.unit, self.width = max(total, 0), label, unit, width
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.2 if self.tty else 5.0
        self.start = time.monotonic()
        self._last = -float("inf")
        self.done = 0

    def update(self, done: int) -> None:
        """Record progress; redraws at most every ``interval`` seconds."""
        self.done = done
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            self._draw(now, final=False)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic(), final=True)

    def line(self, now: float) -> str:
        """The text of the bar at time ``now``."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            eta_text = format_duration(eta) if eta == eta else "?"
            return (f"{self.label} {frac * 100:5.1f}% [{bar}] {self.done}/{self.total} {self.unit} "
                    f"{rate:.1f}/s ETA {eta_text}")
        return f"{self.label} {self.done} {self.unit} {rate:.1f}/s elapsed {format_duration(elapsed)}"

    def _draw(self, now: float, final: bool) -> None:
        text = self.line(now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
