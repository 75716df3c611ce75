"""magma_node as its own process with the fixed backend: commands, stamps, frame, gripper, the
hold-then-zero pattern, the image watchdog, e-stop, parameter changes and raw-image checks. Every
check waits for messages; intervals are judged on the command stamps (rates and delays are printed
by bench/node_timing.py)."""
from __future__ import annotations

import time

import numpy as np
import pytest
from node_support import is_zero, rgb_image, running_node, stamp_s, topics_under, twist_values, wait_until

FIXED = (0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 1.0)
PERIOD = 1 / 5.0  # bridge_orig control period
TOPICS = topics_under("fx")


@pytest.fixture(scope="module")
def fixed(console_script, tmp_path_factory):
    params = {"backend": "fixed", "fixed_action": FIXED, "enabled_on_start": True, "instruction": "check axes",
              "image_topic": TOPICS["image"], "instruction_topic": TOPICS["instruction"],
              "estop_topic": TOPICS["estop"], "twist_topic": TOPICS["twist"], "gripper_topic": TOPICS["gripper"],
              "max_linear_accel": 100.0, "max_angular_accel": 100.0,
              "disabled_zero_s": 3600.0}  # these tests watch the zeros of a disabled node
    with running_node(console_script, "fixed_node", params, tmp_path_factory.mktemp("fixed"), TOPICS) as (_, probe):
        yield probe


def test_fixed_action_becomes_twist_with_frame_stamp_and_gripper(fixed):
    image = rgb_image()
    with fixed.stream(image):
        fixed.wait_state("active")
        fixed.wait_motion()
        t0, now = time.monotonic(), time.time()
        # a moving command after now (the first of each hold may be ramped by the acceleration limit)
        msg = fixed.wait_steady_motion(since=t0)
        window = fixed.wait_twists(20, since=t0)
        # stamps are fresh: commands stamped after this moment keep coming
        wait_until(lambda: any(stamp_s(m) >= now for _, m in fixed.twists.since(t0)), what="a twist stamped now")
    expected = np.array(FIXED[:3]) / PERIOD
    assert np.allclose(twist_values(msg)[:3], expected)
    # yaw 0.1 rad per step about z -> 0.5 rad/s about z
    assert np.allclose(twist_values(msg)[3:], [0.0, 0.0, 0.1 / PERIOD])
    assert msg.header.frame_id == "base_link"
    stamps = [stamp_s(m) for m in window]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "stamps must be fresh and increasing"
    assert fixed.grippers.last().data == 1.0
    assert np.allclose(fixed.actions.last().data, FIXED)


def test_watchdog_stops_after_image_timeout_even_while_an_action_is_held(fixed):
    # each action is held 4 s, images time out after 0.2 s: the stop must come from the watchdog,
    # long before the held action would end (compared on the stamps, not on arrival times)
    hold = 4.0
    assert all(r.successful for r in fixed.set_params(control_rate_hz=1 / hold, image_timeout_s=0.2,
                                                      action_timeout_s=30.0))
    try:
        fixed.wait_stop()
        image = rgb_image()
        with fixed.stream(image):
            fixed.wait_actions(1)  # a fresh action: held from now for 4 s
            moving = fixed.wait_motion()
        last_image = stamp_s(image)
        assert not is_zero(moving)
        _, first_zero = fixed.wait_stop_message(run=3)
        assert stamp_s(first_zero) - last_image < hold - 1.0, "stopped by the end of the hold, not the watchdog"
        fixed.wait_state("no_image")
        assert "no image for more than 0.2 s" in fixed.diagnostics.last()[0].message
    finally:
        assert all(r.successful for r in fixed.set_params(control_rate_hz=0.0, image_timeout_s=0.5,
                                                          action_timeout_s=2.0))


def test_action_is_held_for_one_control_period_then_zero(fixed):
    # images at 1 Hz, actions held 0.2 s: bursts of motion separated by explicit zeros; each burst
    # spans one control period of the command stamps (however many messages a loaded machine sent)
    assert all(r.successful for r in fixed.set_params(control_rate_hz=5.0, image_timeout_s=2.0))
    try:
        fixed.wait_stop()
        with fixed.stream(rgb_image(), rate_hz=1.0):
            fixed.wait_motion()
            t0 = time.monotonic()

            def bursts():
                found, current = [], []
                for _, m in fixed.twists.since(t0):
                    if not is_zero(m):
                        current.append(stamp_s(m))
                    elif current:
                        found.append(current)
                        current = []
                return found if len(found) >= 2 else None

            runs = wait_until(bursts, 30, what="two bursts of motion, each followed by a zero")
        spans = [r[-1] - r[0] for r in runs]
        assert all(span <= PERIOD + 0.1 for span in spans), spans
    finally:
        assert all(r.successful for r in fixed.set_params(control_rate_hz=0.0, image_timeout_s=0.5))


def test_estop_latches_until_reset(fixed):
    with fixed.stream(rgb_image()):
        fixed.wait_motion()
        fixed.estop(True)
        fixed.wait_state("estop")
        fixed.assert_still(time.monotonic())
        refused = fixed.reset()
        assert not refused.success and "still asserted" in refused.message
        fixed.estop(False)
        fixed.assert_still(time.monotonic())
        assert fixed.state()["state"] == "estop", "releasing the e-stop alone must not resume"
        reply = fixed.reset()
        assert reply.success, reply.message
        fixed.wait_state("active")
        fixed.wait_motion()


def test_disable_stops_and_enable_resumes(fixed):
    with fixed.stream(rgb_image()):
        fixed.wait_motion()
        assert fixed.enable(False).success
        fixed.wait_state("disabled")
        fixed.assert_still(time.monotonic(), count=15)  # disabled: explicit zeros, no motion
        assert fixed.enable(True).success
        fixed.wait_motion()


def _bad(change):
    msg = rgb_image()
    for key, value in change.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize("change,message", [
    ({"encoding": "yuv422"}, "unsupported encoding 'yuv422'"),
    ({"height": 47}, "data length 9216 does not match height x step = 47 x 192"),
    ({"height": 0, "width": 0, "step": 0, "data": b""}, "zero-size image"),
])
def test_bad_images_stop_the_robot_until_a_good_image(fixed, change, message):
    with fixed.stream(rgb_image()):
        fixed.wait_motion()
    before = int(fixed.state().get("images_rejected", "0"))
    with fixed.stream(_bad(change)):
        state = fixed.wait_state("fault")
        assert message in state["last_fault"], state
        fixed.assert_still(fixed.wait_stop())
    wait_until(lambda: int(fixed.state().get("images_rejected", "0")) > before, what="images_rejected to grow")
    with fixed.stream(rgb_image()):
        fixed.wait_state("active")
        fixed.wait_motion()


def test_empty_instruction_stops_until_a_good_one(fixed):
    with fixed.stream(rgb_image()):
        fixed.wait_motion()
        fixed.instruct("")
        state = fixed.wait_state("fault")
        assert "instruction rejected: empty" in state["last_fault"]
        fixed.wait_stop()
        fixed.instruct("check axes again")
        fixed.wait_state("active")
        fixed.wait_motion()
