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
