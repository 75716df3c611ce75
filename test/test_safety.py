"""The safety layer with a fake clock: every rule and every watchdog transition."""
from __future__ import annotations

import math

import numpy as np
import pytest

from magma_ros.actions import Twist, load_profile
from magma_ros.policy.base import Prediction
from magma_ros.safety import (
    ActionConverter,
    SafetyConfigError,
    SafetyLimits,
    SafetyState,
    SafetySupervisor,
    UnsafeActionError,
    WatchdogTiming,
    check_action,
    clamp_twist,
    limit_acceleration,
    workspace_filter,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def limits(**overrides) -> SafetyLimits:
    values = dict(max_linear_speed=0.2, max_angular_speed=1.0, max_linear_axis_speed=0.15,
                  max_angular_axis_speed=0.8, max_linear_accel=100.0, max_angular_accel=100.0,
                  workspace_min=(0.0, -0.5, 0.0), workspace_max=(1.0, 0.5, 1.0))
    values.update(overrides)
    return SafetyLimits(**values)


def timing(**overrides) -> WatchdogTiming:
    values = dict(control_period_s=0.2, publish_period_s=0.02, image_timeout_s=0.5, action_timeout_s=2.0,
                  ee_pose_timeout_s=0.5)
    values.update(overrides)
    return WatchdogTiming(**values)


def twist(linear=(0.0, 0.0, 0.0), angular=(0.0, 0.0, 0.0)) -> Twist:
    return Twist(np.array(linear, float), np.array(angular, float))


@pytest.fixture
def clock():
    return FakeClock()


def running(clock, lim=None, tim=None) -> SafetySupervisor:
    """A supervisor that is enabled, has an image and an instruction: active."""
    sup = SafetySupervisor(lim or limits(), tim or timing(), clock, enabled=True)
    sup.image_ok()
    sup.instruction_ok()
    return sup


def advance_with_images(clock, sup, seconds: float, step: float = 0.1) -> None:
    """Let ``seconds`` pass in steps shorter than every timeout (no clock jump), images arriving."""
    end = clock.t + seconds
    while clock.t < end:
        clock.advance(min(step, end - clock.t))
        sup.image_ok()


# --- rules ------------------------------------------------------------------------------------
def test_check_action_rejects_nan_inf_and_wrong_size():
    assert check_action([0.1] * 7).shape == (7,)
    with pytest.raises(UnsafeActionError, match="y=nan"):
        check_action([0.0, math.nan, 0, 0, 0, 0, 1])
    with pytest.raises(UnsafeActionError, match="gripper=inf"):
        check_action([0.0] * 6 + [math.inf])
    with pytest.raises(UnsafeActionError, match="7-vector"):
        check_action([0.0] * 6)


def test_clamp_per_axis_then_norm():
    out = clamp_twist(twist((0.5, 0.0, 0.0), (0.0, 0.0, -3.0)), limits())
    assert np.allclose(out.linear, [0.15, 0, 0]) and np.allclose(out.angular, [0, 0, -0.8])
    out = clamp_twist(twist((0.14, 0.14, 0.14)), limits())
    assert math.isclose(np.linalg.norm(out.linear), 0.2)
    assert np.allclose(out.linear / np.linalg.norm(out.linear), np.ones(3) / math.sqrt(3)), "direction kept"
    small = twist((0.01, -0.02, 0.0), (0.1, 0.0, 0.0))
    assert np.array_equal(clamp_twist(small, limits()).linear, small.linear)


def test_acceleration_limit_ramps_up_but_stops_at_once():
    lim = limits(max_linear_accel=1.0, max_angular_accel=2.0)
    out = limit_acceleration(Twist.zero(), twist((0.1, 0, 0), (0, 0, 1.0)), 0.02, lim)
    assert np.allclose(out.linear, [0.02, 0, 0]) and np.allclose(out.angular, [0, 0, 0.04])
    out = limit_acceleration(twist((0.1, 0, 0)), twist((-0.1, 0, 0)), 0.02, lim)
    assert np.allclose(out.linear, [0.08, 0, 0])
    assert limit_acceleration(twist((0.1, 0, 0)), Twist.zero(), 0.02, lim).is_zero()


def test_workspace_filter_removes_motion_leaving_the_box():
    lim = limits()
    inside = workspace_filter(twist((0.1, 0.1, -0.1)), (0.5, 0.0, 0.5), lim, 0.2)
    assert np.allclose(inside.linear, [0.1, 0.1, -0.1])
    near_top = workspace_filter(twist((0.0, 0.0, 0.1)), (0.5, 0.0, 0.99), lim, 0.2)
    assert np.allclose(near_top.linear, [0, 0, 0.05]), "only up to the boundary within the horizon"
    outside = workspace_filter(twist((0.1, 0.0, -0.1), (0.3, 0, 0)), (1.2, 0.0, 0.5), lim, 0.2)
    assert np.allclose(outside.linear, [0.0, 0.0, -0.1]) and np.allclose(outside.angular, [0.3, 0, 0])
    back = workspace_filter(twist((-0.1, 0.0, 0.0)), (1.2, 0.0, 0.5), lim, 0.2)
    assert np.allclose(back.linear, [-0.1, 0, 0]), "motion back toward the box is allowed"


def test_limits_validation():
    with pytest.raises(SafetyConfigError, match="max_linear_speed"):
        limits(max_linear_speed=0.0)
    with pytest.raises(SafetyConfigError, match="max_angular_accel"):
        limits(max_angular_accel=math.nan)
    with pytest.raises(SafetyConfigError, match=r"workspace_min\[2\]"):
        limits(workspace_min=(0, 0, 2.0))
    with pytest.raises(SafetyConfigError, match="workspace_max: expected"):
        limits(workspace_max=(1.0, 1.0))
    with pytest.raises(SafetyConfigError, match="image_timeout_s"):
        timing(image_timeout_s=-1)
    profile = load_profile("bridge_orig")
    lim = SafetyLimits.from_profile(profile, 5.0, max_linear_speed=0.3, max_angular_speed=1.0,
                                    max_linear_accel=1.0, max_angular_accel=1.0)
    assert math.isclose(lim.max_linear_axis_speed, profile.limits.max_linear_step * 5.0)
    assert lim.workspace_min == profile.workspace.min
    with pytest.raises(SafetyConfigError, match="control_rate_hz"):
        SafetyLimits.from_profile(profile, 0.0, max_linear_speed=0.3, max_angular_speed=1.0,
                                  max_linear_accel=1.0, max_angular_accel=1.0)


# --- conversion ---------------------------------------------------------------------------------
def test_converter_decodes_ids_and_passes_robot_unit_actions():
    profile = load_profile("bridge_orig")
    conv = ActionConverter(profile, vocab_size=128000)
    action = np.array([0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 1.0])
    ids = conv.decoder.encode(action)
    decoded = conv.action(Prediction(token_ids=ids))
    assert np.allclose(decoded[:6], action[:6], atol=0.002)
    assert np.array_equal(conv.action(Prediction(action=action)), action)
    tw, grip = conv.command(action, 0.2)
    assert np.allclose(tw.linear, action[:3] / 0.2) and np.allclose(tw.angular, [0, 0, 0.5]) and grip == 1.0
    with pytest.raises(UnsafeActionError):
        conv.action(Prediction(action=[math.nan] * 7))
    with pytest.raises(ValueError, match="not action tokens"):
        conv.action(Prediction(token_ids=np.arange(7)))


@pytest.mark.parametrize("prediction", [Prediction(token_ids=np.full(7, 127900)), Prediction(action=[0.01] * 7)],
                         ids=["token ids", "robot units"])
def test_an_action_is_checked_once_from_prediction_to_command(monkeypatch, prediction):
    import magma_ros.safety.conversion as conversion

    checked = []
    real = conversion.check_action
    monkeypatch.setattr(conversion, "check_action", lambda values: checked.append(1) or real(values))
    conv = ActionConverter(load_profile("bridge_orig"), vocab_size=128000)
    action = conv.action(prediction)
    conv.command(action, 0.2)
    assert len(checked) == 1
    with pytest.raises(ValueError, match="read-only"):
        action[0] = math.nan  # what action() checked cannot change before command() uses it


def test_command_checks_an_action_it_did_not_produce():
    conv = ActionConverter(load_profile("bridge_orig"), vocab_size=128000)
    checked = conv.action(Prediction(action=[0.01] * 7))
    with pytest.raises(UnsafeActionError, match="non-finite action values: y=nan"):
        conv.command(np.array([0.01, math.nan, 0, 0, 0, 0, 1.0]), 0.2)
    with pytest.raises(UnsafeActionError, match="7-vector"):
        conv.command(checked[:6], 0.2)  # a view of a checked action is not that action


def test_converter_relative_gripper_is_sticky_and_reset_forgets():
    conv = ActionConverter(load_profile("google_robot"), vocab_size=128000)
    step = lambda g: conv.command(np.array([0, 0, 0, 0, 0, 0, g], float), 1 / 3)[1]  # noqa: E731 - a one-line helper local to the test
    assert step(1.0) == 1.0
    assert step(0.0) == 0.0  # opening dropped by 1 -> close, sticky for 15 steps
    assert step(1.0) == 0.0
    conv.reset()
    assert step(1.0) == 1.0


# --- watchdog -----------------------------------------------------------------------------------
def test_starts_without_image_and_disabled(clock):
    sup = SafetySupervisor(limits(), timing(), clock)
    assert sup.tick().state is SafetyState.DISABLED
    sup.set_enabled(True)
    cmd = sup.tick()
    assert cmd.state is SafetyState.NO_IMAGE and cmd.twist.is_zero() and "yet" in cmd.reason
    sup.image_ok()
    assert sup.tick().state is SafetyState.NO_INSTRUCTION
    sup.instruction_ok()
    assert sup.tick().state is SafetyState.ACTIVE


def test_action_held_for_one_control_period_then_zero(clock):
    sup = running(clock)
    assert sup.action_ok(twist((0.05, 0, 0)))
    for _ in range(9):
        cmd = sup.tick()
        assert np.allclose(cmd.twist.linear, [0.05, 0, 0]) and cmd.state is SafetyState.ACTIVE
        clock.advance(0.02)
        sup.image_ok()
    clock.advance(0.021)
    cmd = sup.tick()
    assert cmd.twist.is_zero() and cmd.state is SafetyState.ACTIVE


def test_held_action_is_clamped(clock):
    sup = running(clock)
    sup.action_ok(twist((1.0, 0, 0)))
    assert np.allclose(sup.tick().twist.linear, [0.15, 0, 0])


def test_image_timeout_stops_a_held_action_and_resumes(clock):
    sup = running(clock, tim=timing(control_period_s=2.0))
    sup.action_ok(twist((0.05, 0, 0)))
    clock.advance(0.5)
    assert not sup.tick().twist.is_zero()
    clock.advance(0.01)
    cmd = sup.tick()
    assert cmd.state is SafetyState.NO_IMAGE and cmd.twist.is_zero() and cmd.changed
    assert not sup.tick().changed, "a transition is reported once"
    sup.image_ok()
    assert sup.tick().state is SafetyState.ACTIVE
    assert sup.tick().twist.is_zero(), "the stopped action is not resumed: only fresh actions move"


def test_action_timeout(clock):
    sup = running(clock)
    assert sup.tick().state is SafetyState.ACTIVE
    for _ in range(21):
        clock.advance(0.1)
        sup.image_ok()
    cmd = sup.tick()
    assert cmd.state is SafetyState.ACTION_TIMEOUT and cmd.twist.is_zero()
    assert sup.action_ok(twist((0.01, 0, 0)))
    assert sup.tick().state is SafetyState.ACTIVE


def test_faults_stop_until_good_input_of_that_kind(clock):
    sup = running(clock)
    sup.action_ok(twist((0.05, 0, 0)))
    sup.reject("image", "unsupported encoding 'yuv422'")
    cmd = sup.tick()
    assert cmd.state is SafetyState.FAULT and cmd.twist.is_zero() and "yuv422" in cmd.reason
    assert sup.last_fault == "image: unsupported encoding 'yuv422'"
    sup.image_ok()
    assert sup.tick().state is SafetyState.ACTIVE
    sup.reject("policy", "backend error")
    assert not sup.action_ok(twist((float("nan"), 0, 0))), "a non-finite twist is never held"
    sup.reject("policy", "backend error")
    sup.image_ok()
    assert sup.tick().state is SafetyState.FAULT, "an image does not clear a policy fault"
    assert sup.action_ok(twist((0.05, 0, 0)))
    assert sup.tick().state is SafetyState.ACTIVE


def test_rejected_instruction_drops_the_instruction(clock):
    sup = running(clock)
    sup.reject("instruction", "empty")
    assert sup.tick().state is SafetyState.FAULT
    assert sup.reset()[0]
    assert sup.tick().state is SafetyState.NO_INSTRUCTION
    sup.instruction_ok()
    assert sup.tick().state is SafetyState.ACTIVE


def test_estop_latches_until_released_and_reset(clock):
    sup = running(clock)
    sup.action_ok(twist((0.05, 0, 0)))
    sup.estop(True)
    assert sup.tick().state is SafetyState.ESTOP and sup.tick().twist.is_zero()
    ok, message = sup.reset()
    assert not ok and "still asserted" in message
    sup.estop(False)
    assert sup.tick().state is SafetyState.ESTOP, "release alone does not resume"
    assert not sup.action_ok(twist((0.05, 0, 0)))
    ok, message = sup.reset()
    assert ok and "e-stop" in message
    assert sup.tick().state is SafetyState.ACTIVE


def test_disabled_never_moves(clock):
    sup = running(clock)
    sup.set_enabled(False)
    assert not sup.action_ok(twist((0.05, 0, 0)))
    for _ in range(20):
        cmd = sup.tick()
        assert cmd.twist.is_zero() and cmd.state is SafetyState.DISABLED
        clock.advance(0.02)
    sup.action_ok(twist((0.05, 0, 0)))
    sup.set_enabled(True)
    sup.image_ok()
    assert sup.tick().twist.is_zero(), "an action accepted while disabled never moves the robot"


def test_ee_pose_required_and_workspace_applied(clock):
    sup = running(clock, tim=timing(use_ee_pose=True))
    assert sup.tick().state is SafetyState.NO_EE_POSE
    sup.ee_pose((0.5, 0.0, 0.99))
    sup.action_ok(twist((0.0, 0.0, 0.1)))
    clock.advance(0.02)
    assert np.allclose(sup.tick().twist.linear, [0, 0, 0.05])
    advance_with_images(clock, sup, 0.51)
    assert sup.tick().state is SafetyState.NO_EE_POSE


def test_acceleration_limited_between_ticks(clock):
    sup = running(clock, lim=limits(max_linear_accel=1.0))
    sup.action_ok(twist((0.1, 0, 0)))
    first = sup.tick().twist.linear[0]
    clock.advance(0.005)
    second = sup.tick().twist.linear[0]
    advance_with_images(clock, sup, 1.0)
    third = sup.tick().twist.linear[0]
    assert math.isclose(first, 0.02) and math.isclose(second, 0.025)
    assert math.isclose(third, 0.0), "held action expired"
    sup.action_ok(twist((0.1, 0, 0)))
    clock.advance(0.15)
    assert math.isclose(sup.tick().twist.linear[0], 0.02), "dt is capped at one publish period"
    sup.estop(True)
    assert sup.tick().twist.is_zero(), "stops are not ramped"


# --- clock jumps ------------------------------------------------------------------------------
def test_clock_going_back_stops_at_once_and_needs_fresh_inputs(clock):
    sup = running(clock, tim=timing(control_period_s=30.0))
    epoch = sup.image_ok()
    assert sup.action_ok(twist((0.1, 0, 0)), epoch)
    clock.advance(0.02)
    assert not sup.tick().twist.is_zero()
    clock.advance(-20.0)  # simulator reset: now < held_until and now - last_image < 0
    cmd = sup.tick()
    assert cmd.twist.is_zero() and cmd.state is SafetyState.FAULT and cmd.changed
    assert "clock: jumped back by 20.000 s" in cmd.reason and sup.clock_jumps == 1
    assert sup.last_fault.startswith("clock: ")
    clock.advance(0.02)
    assert sup.tick().state is SafetyState.FAULT, "still waiting for fresh inputs"
    assert not sup.action_ok(twist((0.1, 0, 0)), epoch), "an action computed from a pre-jump image is stale"
    assert sup.tick().state is SafetyState.FAULT
    new_epoch = sup.image_ok()
    assert new_epoch != epoch
    assert sup.tick().state is SafetyState.FAULT, "an image alone does not end the clock fault"
    assert sup.action_ok(twist((0.1, 0, 0)), new_epoch)
    clock.advance(0.02)
    cmd = sup.tick()
    assert cmd.state is SafetyState.ACTIVE and not cmd.twist.is_zero()


def test_clock_jumping_forward_past_a_timeout_is_a_fault_but_normal_steps_are_not(clock):
    sup = running(clock, tim=timing(control_period_s=30.0, image_timeout_s=0.5, action_timeout_s=2.0))
    assert sup.action_ok(twist((0.1, 0, 0)))
    for _ in range(10):
        clock.advance(0.05)
        sup.image_ok()
        assert sup.tick().state is SafetyState.ACTIVE
    assert sup.clock_jumps == 0
    clock.advance(0.6)
    cmd = sup.tick()
    assert cmd.state is SafetyState.FAULT and "clock: jumped forward by 0.600 s" in cmd.reason
    assert cmd.twist.is_zero()


def test_a_step_of_two_publish_periods_is_never_a_jump(clock):
    sup = running(clock, tim=timing(publish_period_s=1.0, image_timeout_s=0.5))
    for _ in range(3):
        clock.advance(1.0)  # camera stopped, only the 1 Hz ticks read the clock
        assert sup.tick().state is SafetyState.NO_IMAGE
    clock.advance(2.5)
    assert sup.tick().state is SafetyState.FAULT and sup.clock_jumps == 1


def test_a_clock_starting_from_zero_is_not_a_jump():
    t = [0.0]
    sup = SafetySupervisor(limits(), timing(), lambda: t[0], enabled=True)
    sup.tick()
    t[0] = 1234.5  # ROS time before and after the first /clock message
    sup.tick()
    assert sup.clock_jumps == 0
    t[0] = 0.0  # a reset back to zero is a jump
    sup.tick()
    assert sup.clock_jumps == 1


def test_clock_fault_with_ee_pose_needs_a_fresh_pose(clock):
    sup = running(clock, tim=timing(use_ee_pose=True))
    sup.ee_pose((0.5, 0.0, 0.5))
    clock.advance(-1.0)
    sup.tick()
    epoch = sup.image_ok()
    assert not sup.action_ok(twist((0.1, 0, 0)), epoch)
    assert sup.tick().state is SafetyState.FAULT
    sup.ee_pose((0.5, 0.0, 0.5))
    assert sup.action_ok(twist((0.1, 0, 0)), epoch)
    assert sup.tick().state is SafetyState.ACTIVE


# --- limit changes bind the next command --------------------------------------------------------
def test_lowered_speed_limit_applies_to_the_held_action_at_once(clock):
    sup = running(clock, tim=timing(control_period_s=5.0), lim=limits(max_linear_accel=2.0))
    sup.action_ok(twist((0.15, 0, 0)))
    for _ in range(10):
        clock.advance(0.02)
        sup.image_ok()
        sup.tick()
    assert math.isclose(sup.tick().twist.linear[0], 0.15)
    sup.configure(limits(max_linear_speed=0.01, max_linear_accel=2.0), sup.timing)
    clock.advance(0.02)
    cmd = sup.tick()
    assert math.isclose(np.linalg.norm(cmd.twist.linear), 0.01), "no deceleration ramp above a lowered limit"
    sup.configure(limits(max_linear_speed=0.2, max_linear_axis_speed=0.05, max_linear_accel=2.0), sup.timing)
    clock.advance(0.02)
    assert math.isclose(sup.tick().twist.linear[0], 0.05), "a lowered per-axis limit too"


def test_shortened_control_period_cuts_the_hold(clock):
    sup = running(clock, tim=timing(control_period_s=5.0))
    sup.action_ok(twist((0.1, 0, 0)))
    clock.advance(0.3)
    sup.image_ok()
    assert not sup.tick().twist.is_zero()
    sup.configure(sup.limits, timing(control_period_s=0.2))
    assert sup.tick().twist.is_zero(), "held past the new control period"
    sup.action_ok(twist((0.1, 0, 0)))
    sup.configure(sup.limits, timing(control_period_s=10.0))
    clock.advance(0.3)
    sup.image_ok()
    assert sup.tick().twist.is_zero(), "a longer period does not extend an action accepted before"


# --- disabled goes quiet; e-stop and faults do not ---------------------------------------------
def test_disabled_publishes_zero_for_an_interval_then_nothing(clock):
    sup = running(clock, tim=timing(disabled_zero_s=0.5))
    sup.action_ok(twist((0.1, 0, 0)))
    assert not sup.tick().twist.is_zero()
    sup.set_enabled(False)
    published = []
    for _ in range(40):
        cmd = sup.tick()
        assert cmd.twist.is_zero() and cmd.state is SafetyState.DISABLED
        published.append(cmd.publish)
        clock.advance(0.02)
        sup.image_ok()
    quiet_from = published.index(False)
    assert 24 <= quiet_from <= 26 and not any(published[quiet_from:]), published  # 0.5 s of 0.02 s ticks
    sup.estop(True)
    cmd = sup.tick()
    assert cmd.publish and cmd.state is SafetyState.ESTOP, "an e-stop is always commanded"
    sup.estop(False)
    assert sup.reset()[0]
    assert not sup.tick().publish
    sup.set_enabled(False)
    assert sup.tick().publish, "every disable publishes its stop again"
    sup.set_enabled(True)
    sup.reject("image", "bad")
    cmd = sup.tick()
    assert cmd.publish and cmd.state is SafetyState.FAULT


def test_disabled_at_start_goes_quiet_after_the_interval(clock):
    sup = SafetySupervisor(limits(), timing(disabled_zero_s=0.1), clock)
    assert sup.tick().publish
    clock.advance(0.11)
    assert not sup.tick().publish


# --- smaller fixes ----------------------------------------------------------------------------
def test_non_finite_twist_keeps_the_policy_fault(clock):
    sup = running(clock)
    sup.reject("policy", "backend error")
    assert not sup.action_ok(twist((math.nan, 0, 0)))
    cmd = sup.tick()
    assert cmd.state is SafetyState.FAULT and "non-finite twist" in cmd.reason
    assert sup.action_ok(twist((0.1, 0, 0)))
    assert sup.tick().state is SafetyState.ACTIVE


def test_new_instruction_drops_the_held_action(clock):
    sup = running(clock, tim=timing(control_period_s=5.0))
    sup.action_ok(twist((0.1, 0, 0)))
    assert not sup.tick().twist.is_zero()
    sup.instruction_ok()
    clock.advance(0.02)
    assert sup.tick().twist.is_zero()


def test_no_motion_before_simulated_time_starts():
    t = [0.0]  # ROS time before the first /clock message
    sup = SafetySupervisor(limits(), timing(), lambda: t[0], enabled=True)
    sup.instruction_ok()
    epoch = sup.image_ok()
    assert not sup.action_ok(twist((0.1, 0, 0)), epoch)
    command = sup.tick()
    assert command.state is SafetyState.NO_CLOCK and np.all(command.twist.linear == 0.0)
    t[0] = 50.0  # simulated time starts: what arrived at time 0 is not fresh
    assert sup.tick().state is SafetyState.NO_IMAGE
    assert not sup.action_ok(twist((0.1, 0, 0)), epoch)  # computed from an image of before the start
    epoch = sup.image_ok()
    assert sup.action_ok(twist((0.1, 0, 0)), epoch)
    assert sup.tick().state is SafetyState.ACTIVE


def test_a_clock_jump_commands_zero_before_fresh_inputs_can_move_again(clock):
    sup = running(clock)
    clock.advance(-5.0)
    epoch = sup.image_ok()  # the jump is seen here, off the publish tick
    sup.action_ok(twist((0.1, 0, 0)), epoch)
    command = sup.tick()  # the first command after the jump is zero, however quick the fresh inputs
    assert command.state is SafetyState.FAULT and np.all(command.twist.linear == 0.0)
    epoch = sup.image_ok()
    assert sup.action_ok(twist((0.1, 0, 0)), epoch)
    assert sup.tick().state is SafetyState.ACTIVE


@pytest.mark.parametrize("reading", [-5.0, -math.inf, math.nan])
def test_an_invalid_clock_is_a_fault_for_as_long_as_it_lasts(clock, reading):
    """A negative /clock (the node reads it as -inf: rclpy has no negative time), NaN or infinity."""
    sup = running(clock, tim=timing(control_period_s=30.0))
    epoch = sup.image_ok()
    assert sup.action_ok(twist((0.1, 0, 0)), epoch)
    assert not sup.tick().twist.is_zero()
    valid, clock.t = clock.t, reading
    cmd = sup.tick()
    assert cmd.state is SafetyState.FAULT and cmd.twist.is_zero() and cmd.changed
    assert "clock: reads a negative or non-finite time" in cmd.reason and sup.clock_jumps == 1
    for _ in range(5):  # fresh inputs, a reset: nothing moves while the clock is invalid
        new_epoch = sup.image_ok()
        assert new_epoch != epoch
        assert not sup.action_ok(twist((0.1, 0, 0)), new_epoch)
        assert sup.reset()[0]
        cmd = sup.tick()
        assert cmd.state is SafetyState.FAULT and cmd.twist.is_zero() and not cmd.changed, "reported once"
    assert sup.clock_jumps == 1
    clock.t = valid + 0.02  # valid again: fresh inputs end the fault
    assert sup.tick().state is SafetyState.FAULT
    epoch = sup.image_ok()
    assert sup.action_ok(twist((0.1, 0, 0)), epoch)
    clock.advance(0.02)
    assert sup.tick().state is SafetyState.ACTIVE


def test_a_clock_invalid_from_the_start_is_a_fault_not_no_clock():
    sup = SafetySupervisor(limits(), timing(), lambda: -math.inf, enabled=True)
    cmd = sup.tick()
    assert cmd.state is SafetyState.FAULT and cmd.twist.is_zero() and "clock: reads a negative" in cmd.reason
