"""magma_node as its own process with the fixed backend: commands, stamps, frame, rates, gripper,
the hold-then-zero pattern, the image watchdog, e-stop, parameter changes and raw-image checks."""
from __future__ import annotations

import time

import numpy as np
import pytest

from node_support import NodeProcess, Probe, is_zero, rgb_image, twist_values, wait_until

FIXED = (0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 1.0)
PERIOD = 1 / 5.0  # bridge_orig control period
TOPICS = {"image": "/fx/camera", "instruction": "/fx/instruction", "estop": "/fx/estop",
          "twist": "/fx/twist", "gripper": "/fx/gripper"}


@pytest.fixture(scope="module")
def fixed(console_script, tmp_path_factory):
    params = {"backend": "fixed", "fixed_action": FIXED, "enabled_on_start": True, "instruction": "check axes",
              "image_topic": TOPICS["image"], "instruction_topic": TOPICS["instruction"],
              "estop_topic": TOPICS["estop"], "twist_topic": TOPICS["twist"], "gripper_topic": TOPICS["gripper"],
              "max_linear_accel": 100.0, "max_angular_accel": 100.0,
              "disabled_zero_s": 3600.0}  # these tests watch the zeros of a disabled node
    node = NodeProcess(console_script("magma_node"), "fixed_node", params, tmp_path_factory.mktemp("fixed"))
    probe = Probe("fixed_node", TOPICS)
    try:
        wait_until(lambda: probe.twists.items, 60, what=f"first twist; node log:\n{node.output()}")
        yield probe
    finally:
        probe.close()
        code = node.stop()
        assert code == 0, node.output()


def test_fixed_action_becomes_twist_with_frame_stamp_and_gripper(fixed):
    image = rgb_image()
    with fixed.stream(image):
        fixed.wait_state("active")
        fixed.wait_motion()
        t0 = time.monotonic()
        time.sleep(1.0)
        # the latest moving command (the very first may be ramped by the acceleration limit)
        msg = next(m for _, m in reversed(fixed.twists.items) if not is_zero(m))
    expected = np.array(FIXED[:3]) / PERIOD
    assert np.allclose(twist_values(msg)[:3], expected)
    # yaw 0.1 rad per step about z -> 0.5 rad/s about z
    assert np.allclose(twist_values(msg)[3:], [0.0, 0.0, 0.1 / PERIOD])
    assert msg.header.frame_id == "base_link"
    window = fixed.twists.since(t0)
    stamps = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in window]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "stamps must be fresh and increasing"
    assert abs(stamps[-1] - time.time()) < 5.0
    rate = (len(window) - 1) / (window[-1][0] - window[0][0])
    assert 30.0 < rate < 70.0, f"publish rate {rate:.1f} Hz, expected about 50"
    assert fixed.grippers.last().data == 1.0
    assert np.allclose(fixed.actions.last().data, FIXED)


def test_watchdog_stops_after_image_timeout_even_while_an_action_is_held(fixed):
    # hold each action 1 s, images time out after 0.2 s: the stop must come from the watchdog
    assert all(r.successful for r in fixed.set_params(control_rate_hz=1.0, image_timeout_s=0.2))
    try:
        fixed.wait_stop()
        with fixed.stream(rgb_image()):
            fixed.wait_motion()
            time.sleep(0.5)
            moving_at_end = fixed.twists.last()
        last_image = fixed.last_image_time
        assert not is_zero(moving_at_end)
        first_zero = fixed.wait_stop(run=3)
        delay = first_zero - last_image
        assert delay < 0.2 + 0.02 + 0.2, f"stopped {delay:.3f} s after the last image"
        fixed.wait_state("no_image")
        assert "no image for more than 0.2 s" in fixed.diagnostics.last()[0].message
    finally:
        assert all(r.successful for r in fixed.set_params(control_rate_hz=0.0, image_timeout_s=0.5))


def test_action_is_held_for_one_control_period_then_zero(fixed):
    # images at 1 Hz, actions held 0.2 s: bursts of motion separated by explicit zeros
    assert all(r.successful for r in fixed.set_params(control_rate_hz=5.0, image_timeout_s=2.0))
    try:
        fixed.wait_stop()
        with fixed.stream(rgb_image(), rate_hz=1.0):
            fixed.wait_motion()
            t0 = time.monotonic()
            time.sleep(3.2)
        runs, current = [], 0
        for _, m in fixed.twists.since(t0):
            if is_zero(m):
                if current:
                    runs.append(current)
                current = 0
            else:
                current += 1
        assert len(runs) >= 2, runs
        # one control period (0.2 s) at 50 Hz is 10 messages, plus the immediate publish on arrival
        assert all(8 <= r <= 13 for r in runs), runs
    finally:
        assert all(r.successful for r in fixed.set_params(control_rate_hz=0.0, image_timeout_s=0.5))


def test_estop_latches_until_reset(fixed):
    with fixed.stream(rgb_image()):
        fixed.wait_motion()
        fixed.estop(True)
        fixed.wait_state("estop")
        t0 = time.monotonic()
        time.sleep(0.5)
        assert all(is_zero(m) for _, m in fixed.twists.since(t0))
        refused = fixed.reset()
        assert not refused.success and "still asserted" in refused.message
        fixed.estop(False)
        time.sleep(0.5)
        assert fixed.state()["state"] == "estop", "releasing the e-stop alone must not resume"
        assert all(is_zero(m) for _, m in fixed.twists.since(t0))
        reply = fixed.reset()
        assert reply.success, reply.message
        fixed.wait_state("active")
        fixed.wait_motion()


def test_disable_stops_and_enable_resumes(fixed):
    with fixed.stream(rgb_image()):
        fixed.wait_motion()
        assert fixed.enable(False).success
        fixed.wait_state("disabled")
        t0 = time.monotonic()
        time.sleep(0.6)
        window = fixed.twists.since(t0)
        assert len(window) > 15 and all(is_zero(m) for _, m in window), "disabled: explicit zeros, no motion"
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
        stopped = fixed.wait_stop()
        time.sleep(0.3)
        assert all(is_zero(m) for _, m in fixed.twists.since(stopped))
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
