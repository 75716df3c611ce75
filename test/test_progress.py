"""The tools' progress bar (eval, replay, sim-eval): whole lines in a log, redraws on a terminal."""
from __future__ import annotations

import io
import re

from magma_ros.progress import Progress

# label, percentage, 24-character bar, done/total, rate, time left
QUARTER = re.compile(r"eval  25\.0% \[#{6}-{18}\] 50/200 +[\d.]+ frames/s ETA [\d:]+")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_has_fraction_bar_count_rate_and_eta():
    bar = Progress(200, "eval", stream=io.StringIO())
    bar.update(50)
    assert QUARTER.fullmatch(bar.line()), bar.line()


def test_log_gets_whole_lines_ending_with_the_final_state():
    log = io.StringIO()
    bar = Progress(200, "eval", stream=log)
    for done in range(1, 201):
        bar.update(done)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0].startswith("eval   0.0% [------------------------] 0/200 ")
    assert re.fullmatch(r"eval 100\.0% \[#{24}\] 200/200 +[\d.]+ frames/s ETA 00:00", lines[-1]), lines[-1]
    assert all(line.startswith("eval ") for line in lines)


def test_terminal_redraws_in_place_and_ends_the_line():
    term = Terminal()
    bar = Progress(4, "replay", stream=term)
    for done in range(1, 5):
        bar.update(done)
    bar.close()
    text = term.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    assert text.rsplit("\r", 1)[-1].startswith("replay 100.0% [########################] 4/4 ")


def test_total_and_label_set_once_known():
    """sim-eval learns the number of episodes and relabels the bar with each run."""
    log = io.StringIO()
    bar = Progress(0, "sim-eval", unit="episodes", stream=log)
    bar.total, bar.label = 6, "demo: reach the red cube"
    bar.update(6)
    bar.close()
    assert (bar.total, bar.label) == (6, "demo: reach the red cube")
    assert log.getvalue().splitlines()[-1].startswith("demo: reach the red cube 100.0% [")
    assert " 6/6 " in log.getvalue()


def test_without_a_total_counts_units_with_rate_and_elapsed_time():
    """replay looping until stopped has no total."""
    log = io.StringIO()
    bar = Progress(0, "replay", stream=log)
    bar.update(57)
    bar.close()
    assert re.fullmatch(r"replay 57 frames +[\d.]+ frames/s elapsed [\d:]+", log.getvalue().splitlines()[-1])


def test_disabled_bar_writes_nothing():
    log = io.StringIO()
    bar = Progress(10, "eval", stream=log, enabled=False)
    bar.update(5)
    bar.close()
    assert log.getvalue() == ""
