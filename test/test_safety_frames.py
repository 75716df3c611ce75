"""FrameGate (magma_ros.safety.frames): which camera frames may reach the model, on a clock the
test sets. No ROS."""
from __future__ import annotations

import pytest

from magma_ros.safety.frames import (
    FROM_FUTURE,
    NO_CLOCK,
    OUT_OF_ORDER,
    REPEATED,
    TOO_OLD,
    UNSTAMPED,
    FrameGate,
    FrameRejection,
)

S = 1_000_000_000


class Clock:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


def rule(rejection: FrameRejection | None) -> str | None:
    return rejection.counter if rejection is not None else None


def test_frames_with_increasing_stamps_within_the_age_are_admitted():
    # a live camera at 30 Hz: each frame stamped 10 ms before it arrives
    clock = Clock(2000 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    for _ in range(30):
        clock.ns += S // 30
        stamp = clock.ns - 10_000_000
        assert gate.admit(stamp // S, stamp % S) is None
    assert gate.last_rejection == ""


def test_alternating_old_stamps_never_pass():
    """The attack of issue 23: (100 s, 1 ns) and (100 s, 2 ns) in turn, on a clock far later."""
    clock = Clock(1_800_000_000 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    for k in range(40):
        clock.ns += S // 10
        assert rule(gate.admit(100, 1 + k % 2)) == TOO_OLD
    assert "more than max_image_age_s (0.4 s)" in gate.last_rejection


def test_without_an_age_check_a_stamp_not_newer_than_the_newest_admitted_is_dropped():
    clock = Clock(1_800_000_000 * S)
    gate = FrameGate(clock, max_age_s=0.0)
    assert gate.admit(100, 1) is None
    assert gate.admit(100, 2) is None
    rules = [rule(gate.admit(100, 1 + k % 2)) for k in range(9)]
    assert rules == [OUT_OF_ORDER, REPEATED] * 4 + [OUT_OF_ORDER]
    assert "before the newest accepted frame (100.000000002 s)" in gate.last_rejection


def test_a_repeat_is_judged_against_the_newest_admitted_frame_not_the_one_before():
    clock = Clock(50 * S)
    gate = FrameGate(clock, max_age_s=1.0)
    assert gate.admit(49, 900_000_000) is None
    assert rule(gate.admit(49, 800_000_000)) == OUT_OF_ORDER  # rejected: does not become the reference
    assert rule(gate.admit(49, 900_000_000)) == REPEATED
    assert gate.admit(49, 950_000_000) is None


def test_replaying_one_old_frame_is_too_old_every_time():
    clock = Clock(500 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    for _ in range(90):
        clock.ns += S // 30
        assert rule(gate.admit(498, 0)) == TOO_OLD


def test_a_recent_frame_resent_with_its_stamp_is_a_repeat():
    """magma_sim's lockstep resend: the same stamp while the clock waits."""
    clock = Clock(20 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    assert gate.admit(20, 0) is None
    assert rule(gate.admit(20, 0)) == REPEATED
    assert "repeat" in gate.last_rejection


def test_coarse_stamps_are_repeats_within_one_stamp():
    """A 30 Hz camera with 1 s stamps: one frame a second gets through, the rest are repeats."""
    clock = Clock(300 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    rules = []
    for _ in range(60):
        rules.append(rule(gate.admit(clock.ns // S, 0)))
        clock.ns += S // 30
    assert rules.count(None) == 2 and rules.count(REPEATED) == 58


def test_a_stamp_too_far_ahead_of_the_clock_is_from_the_future():
    clock = Clock(100 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    assert rule(gate.admit(4_000_000_000, 0)) == FROM_FUTURE
    assert "same clock" in gate.last_rejection
    assert gate.admit(100, 300_000_000) is None  # slightly ahead (clock skew, a late /clock): admitted
    # the future frame never became the reference for later frames
    clock.ns += S
    assert gate.admit(101, 0) is None


def test_zero_stamp_is_refused_unless_allowed_then_taken_as_now():
    clock = Clock(100 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    assert rule(gate.admit(0, 0)) == UNSTAMPED
    assert "allow_unstamped_images" in gate.last_rejection
    gate = FrameGate(clock, max_age_s=0.4, allow_unstamped=True)
    assert gate.admit(0, 0) is None
    assert rule(gate.admit(0, 0)) == REPEATED  # the clock did not move: not a new frame
    clock.ns += 1
    assert gate.admit(0, 0) is None
    assert rule(gate.admit(100, 0)) == OUT_OF_ORDER  # before "now" of the unstamped frame admitted


def test_the_clock_going_back_starts_a_new_timeline():
    clock = Clock(100 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    assert gate.admit(100, 0) is None
    clock.ns = 80 * S  # simulator reset
    assert rule(gate.admit(99, 900_000_000)) == FROM_FUTURE  # a late frame from before the reset
    assert gate.admit(80, 0) is None
    assert gate.admit(80, 100) is None


def test_the_age_limit_can_change_and_must_not_be_negative():
    clock = Clock(100 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    assert rule(gate.admit(99, 0)) == TOO_OLD
    gate.configure(2.0)
    assert gate.max_age_s == 2.0
    assert gate.admit(99, 0) is None
    gate.configure(0.0)
    assert rule(gate.admit(1, 0)) == OUT_OF_ORDER  # older than the newest admitted; no age check
    assert gate.admit(99, 500_000_000) is None  # however old, as long as it is newer
    with pytest.raises(ValueError, match="max_age_s must be >= 0"):
        gate.configure(-0.1)


def test_no_frame_passes_while_the_clock_has_no_valid_time():
    reading: list[int | None] = [100 * S]
    gate = FrameGate(lambda: reading[0], max_age_s=0.0, allow_unstamped=True)
    assert gate.admit(100, 0) is None
    reading[0] = None  # a negative /clock
    assert rule(gate.admit(100, 1)) == NO_CLOCK
    assert rule(gate.admit(0, 0)) == NO_CLOCK
    assert "no valid time" in gate.last_rejection
    reading[0] = 100 * S + 5
    assert gate.admit(100, 2) is None


def test_the_first_rule_that_applies_is_counted():
    clock = Clock(1000 * S)
    gate = FrameGate(clock, max_age_s=0.4)
    assert gate.admit(1000, 0) is None
    assert rule(gate.admit(1000, 0)) == REPEATED  # an exact copy is a repeat, however old it gets
    clock.ns += S
    assert rule(gate.admit(1000, 0)) == REPEATED
    assert rule(gate.admit(100, 1)) == TOO_OLD  # old and before the newest: the age says more
    assert rule(gate.admit(999, 900_000_000)) == TOO_OLD
    gate.configure(5.0)
    assert rule(gate.admit(999, 900_000_000)) == OUT_OF_ORDER
