"""The tools' progress bar (eval, replay, sim-eval), drawn by tqdm on stderr: redrawn in place on a
terminal; in a log or CI output, where a carriage return does not redraw, one whole line every
few seconds and a final one."""
from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

# e.g. "eval  25.0% [######------------------] 50/200  5.00 frames/s ETA 00:30"
BAR_FORMAT = "{desc} {percentage:5.1f}% [{bar:24}] {n_fmt}/{total_fmt} {rate_noinv_fmt} ETA {remaining}"
# without a total (replay looping forever), e.g. "replay 57 frames 20.00 frames/s elapsed 00:03"
COUNT_FORMAT = "{desc} {n_fmt}{unit} {rate_noinv_fmt} elapsed {elapsed}"
TTY_INTERVAL_S = 0.2
LOG_INTERVAL_S = 5.0


class Progress:
    """Shows ``done/total`` units, the rate and the time left; with ``total`` 0 (not known, or no
    end) the units done, the rate and the time elapsed."""

    def __init__(self, total: int, label: str, unit: str = "frames", stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        stream = stream or sys.stderr
        tty = bool(getattr(stream, "isatty", lambda: False)())
        self._label = label
        self._bar = tqdm(total=max(total, 0) or None, desc=label, unit=f" {unit}", bar_format=_format(total),
                         ascii="-#", file=stream if tty else _Lines(stream), disable=not enabled, miniters=1,
                         mininterval=TTY_INTERVAL_S if tty else LOG_INTERVAL_S)

    @property
    def total(self) -> int:
        """Units in all; may be set once known."""
        return self._bar.total or 0

    @total.setter
    def total(self, value: int) -> None:
        self._bar.total = max(value, 0) or None
        self._bar.bar_format = _format(value)

    @property
    def label(self) -> str:
        """The text before the bar; may change between updates."""
        return self._label

    @label.setter
    def label(self, text: str) -> None:
        self._label = text
        self._bar.set_description_str(text, refresh=False)

    def update(self, done: int) -> None:
        """Record that ``done`` units are finished; redrawn at most every few tenths of a second
        (terminal) or seconds (log)."""
        self._bar.update(done - self._bar.n)

    def line(self) -> str:
        """The bar's current text."""
        return str(self._bar)

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._bar.close()


def _format(total: int) -> str:
    return BAR_FORMAT if total > 0 else COUNT_FORMAT


class _Lines:
    """A non-terminal stream for tqdm: each redraw (tqdm starts it with a carriage return) becomes a
    line of its own, so a log holds whole lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.split("\r"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()
