"""magma_node on simulated time (use_sim_time, /clock from the test): a clock that goes back with
the camera stopped stops the robot at once (it used to hold the action for the length of the
jump) and motion needs fresh inputs stamped after the jump; a negative /clock is a clock fault
(it used to raise in rclpy's /clock callback, in a loop). The probe's images are stamped on the
simulated clock."""
from __future__ import annotations

import time

import pytest
from node_support import NodeProcess, Probe, is_zero, rgb_image, topic_params, topics_under, wait_until
from safety_support import MOVE, SimClock, stamp_s

TOPICS = topics_under("sc_clk")
IMAGE_TIMEOUT_S = 1.0


@pytest.fixture
def sim(console_script, tmp_path):
    params = {"use_sim_time": True, "backend": "fixed", "fixed_action": MOVE, "enabled_on_start": True,
              "instruction": "clock test", "control_rate_hz": 0.2,  # each action held 5 s
              "image_timeout_s": IMAGE_TIMEOUT_S, "action_timeout_s": 60.0, "max_linear_accel": 100.0,
              "max_angular_accel": 100.0, **topic_params(TOPICS)}
    node = NodeProcess(console_script("magma_node"), "clock_node", params, tmp_path)
    probe = Probe("clock_node", TOPICS)
    clock = SimClock(probe, start=100.0)
    try:
        # stamped on /clock: before its first /clock the node runs at ROS time 0, and a clock that
        # starts there at 500 s is a clock starting, not a jump
        wait_until(lambda: any(stamp_s(m) >= 100.0 for _, m in list(probe.twists.items)), 90,
                   what=f"a twist stamped on the simulated clock; node log:\n{node.output()}")
        yield node, probe, clock
    finally:
        clock.close()
        probe.close()
        code = node.stop()
        assert code == 0, node.output()


def test_clock_going_back_with_the_camera_stopped_stops_the_robot(sim):
    node, probe, clock = sim
    with probe.stream(rgb_image()):
        probe.wait_motion(60)
    clock.jump_to(80.0)  # simulator reset / bag restart, camera stopped
    # stamps from before the jump are >= 100; everything stamped after it must be zero
    wait_until(lambda: any(80.0 + IMAGE_TIMEOUT_S + 0.5 <= stamp_s(m) < 99.0 for _, m in list(probe.twists.items)),
               60, what=f"twists stamped after the jump; node log:\n{node.output()}")
    after = [m for _, m in list(probe.twists.items) if stamp_s(m) < 99.0]
    assert after and all(is_zero(m) for m in after), [(stamp_s(m), m.twist.linear.x) for m in after if not is_zero(m)]
    state = probe.wait_state("fault", 30)
    assert int(state["clock_jumps"]) >= 1, state
    # (a later fault, e.g. a /clock stalled on a loaded machine, may have replaced last_fault)
    wait_until(lambda: "clock: jumped back by" in node.output(), 30, what="the back jump in the node's log")
    # fresh images after the jump: a fresh action moves the robot again
    with probe.stream(rgb_image()):
        probe.wait_state("active", 60)
        probe.wait_motion(60)
    assert "Traceback" not in node.output()


def test_clock_jumping_forward_past_a_timeout_is_a_fault(sim):
    node, probe, clock = sim
    with probe.stream(rgb_image()):
        probe.wait_motion(60)
        clock.jump_to(500.0)  # images keep coming: only the jump itself can stop the robot
        # with images streaming the fault may clear between two diagnostics: wait on its counter
        state = wait_until(lambda: (lambda s: s if int(s.get("clock_jumps", 0)) >= 1 else None)(probe.state()), 60,
                           what="clock_jumps >= 1 in /diagnostics")
        assert "clock: jumped forward by" in state["last_fault"], state
        wait_until(lambda: any(stamp_s(m) >= 500.0 for _, m in list(probe.twists.items)), 60,
                   what="twists stamped after the jump")
        first = min(stamp_s(m) for _, m in list(probe.twists.items) if stamp_s(m) >= 500.0)
        # the held action (5 s) is dropped: zero from the jump until a fresh action after it
        probe.wait_state("active", 60)
        probe.wait_motion(60)
    after = sorted((stamp_s(m), is_zero(m)) for _, m in list(probe.twists.items) if stamp_s(m) >= 500.0)
    assert after[0] == (first, True), after[:3]


def test_a_negative_clock_is_a_clock_fault_not_an_exception_loop(sim):
    """/clock at sec=-5 (rclpy has no negative time: it used to raise in every callback, thousands
    of internal errors and zero twists at the rate of the error loop)."""
    node, probe, clock = sim
    with probe.stream(rgb_image()):
        probe.wait_motion(60)
        received_before = int(probe.state().get("images_received", 0))
        clock.jump_to(-5.0, hold=True)  # /clock at sec=-5; the camera keeps streaming, stamped -5 s
        state = probe.wait_state("fault", 60)
        wait_until(lambda: "clock: reads a negative or non-finite time" in probe.state().get("last_fault", ""), 30,
                   what=f"the invalid clock as last_fault: {probe.state()}")
        faulted = time.monotonic()
        probe.assert_still(faulted, count=25)  # zero twists keep coming: the publish timer runs
        wait_until(lambda: int(probe.state().get("images_without_clock", 0)) > 0, 30,
                   what=f"frames refused while the clock is negative: {probe.state()}")
    state = probe.state()
    assert int(state["internal_errors"]) == 0, state
    assert int(state["images_received"]) > received_before
    assert probe.state().get("state") == "fault", probe.state()
    output = node.output()
    assert "Traceback" not in output and "internal error" not in output, output
    assert output.count("clock: reads a negative or non-finite time") == 1, output  # one log line
    # the clock runs again from 200 s: fresh inputs move the robot again
    clock.jump_to(200.0)
    with probe.stream(rgb_image()):
        probe.wait_state("active", 60)
        probe.wait_motion(60)
    assert "Traceback" not in node.output()
