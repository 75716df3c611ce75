"""The lockstep gate's bookkeeping (pure): when magma_sim waits for the controller and when not."""
from __future__ import annotations

from magma_ros.sim.lockstep import ENGAGE_WINDOW_NS, LockstepGate

TICK = 20_833_333


def test_not_engaged_until_twists_follow_the_simulated_clock():
    gate = LockstepGate()
    assert gate.tick_answered(5 * TICK) and not gate.expects_reply(True)
    gate.on_twist(1_796_000_000 * 10**9, 5 * TICK)  # a wall-clock stamp: not on our clock
    assert not gate.engaged and gate.foreign_stamps == 1
    gate.on_twist(4 * TICK, 5 * TICK)
    assert gate.engaged


def test_every_tick_waits_for_a_twist_stamped_at_that_tick():
    gate = LockstepGate()
    gate.on_twist(5 * TICK, 5 * TICK)
    assert gate.tick_answered(5 * TICK) and not gate.tick_answered(6 * TICK)
    gate.on_twist(4 * TICK, 6 * TICK)  # a late twist does not answer a newer tick
    assert not gate.tick_answered(6 * TICK)
    gate.on_twist(6 * TICK, 6 * TICK)
    assert gate.tick_answered(6 * TICK)


def test_frames_wait_for_a_reply_while_an_instruction_is_known():
    gate = LockstepGate()
    gate.on_twist(0, 0)
    assert gate.expects_reply(True) and not gate.expects_reply(False)
    before = gate.replies
    assert not gate.reply_answered(before)
    gate.on_reply()
    assert gate.reply_answered(before)


def test_timeouts_are_counted_and_disengage_until_the_controller_is_back():
    gate = LockstepGate()
    gate.on_twist(0, 0)
    gate.reply_timed_out()
    assert gate.timeouts == 1 and not gate.expects_reply(True)
    gate.on_reply()  # it answers again
    assert gate.expects_reply(True)
    gate.reply_timed_out()
    gate.on_reset()  # a new episode expects replies again
    assert gate.expects_reply(True)
    gate.tick_timed_out()
    assert gate.timeouts == 3 and not gate.engaged and gate.tick_answered(10 * TICK)
    gate.on_twist(10 * TICK + ENGAGE_WINDOW_NS, 10 * TICK)  # within the window: back in lockstep
    assert gate.engaged and gate.tick_answered(10 * TICK)


class _WaitingSim:
    """Just what ``stepping._wait`` uses of the node: settings, /clock and the frame resend."""

    def __init__(self, timeout_s: float) -> None:
        self.settings = type("Settings", (), {"lockstep_timeout_s": timeout_s})()
        self.clocks = self.resent = 0

    def publish_clock(self) -> None:
        self.clocks += 1

    def resend_frame(self) -> None:
        self.resent += 1


class _Executor:
    def spin_once(self, timeout_sec: float) -> None:
        import time
        time.sleep(min(timeout_sec, 0.01))


def test_a_frame_without_a_reply_is_resent_while_waiting_then_the_wait_times_out():
    from magma_ros.sim.stepping import FRAME_RESEND_S, _wait

    sim = _WaitingSim(timeout_s=FRAME_RESEND_S * 2.5)
    assert _wait(sim, _Executor(), lambda: False, lambda: False, resend=sim.resend_frame) is False
    assert sim.resent >= 1 and sim.clocks >= 1  # a best-effort frame may have been lost: it is sent again
    answered = _WaitingSim(timeout_s=60.0)
    assert _wait(answered, _Executor(), lambda: False, lambda: True, resend=answered.resend_frame) is True
    assert answered.resent == 0  # a reply that is there needs no resend
