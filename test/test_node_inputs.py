"""magma_node as its own process with a scripted policy (-p backend:=node_support:scripted),
compressed images and an end-effector pose: enable/disable, token decoding, gripper, every
bad-input and backend-failure case, workspace limits, parameter validation, start-up errors."""
from __future__ import annotations

import time

import numpy as np
import pytest
from node_support import (
    MOVE_ACTION,
    Probe,
    is_zero,
    jpeg_image,
    run_node_expecting_exit,
    running_node,
    topics_under,
    twist_values,
    wait_until,
)

from magma_ros.ros.node_clock import DIAGNOSTICS_PERIOD_S

PERIOD = 0.2
TOPICS = topics_under("sc", ee_pose=True)
INSIDE = (0.3, 0.0, 0.2)  # inside bridge_orig's workspace box


@pytest.fixture(scope="module")
def node(console_script, tmp_path_factory):
    params = {"backend": "node_support:scripted", "compressed_image": True, "image_topic": TOPICS["image"],
              "instruction_topic": TOPICS["instruction"], "estop_topic": TOPICS["estop"],
              "twist_topic": TOPICS["twist"], "gripper_topic": TOPICS["gripper"], "ee_pose_topic": TOPICS["ee_pose"],
              "max_linear_accel": 100.0, "max_angular_accel": 100.0, "max_instruction_chars": 50,
              "disabled_zero_s": 3600.0}  # these tests watch the zeros of a disabled node
    with running_node(console_script, "scripted_node", params, tmp_path_factory.mktemp("scripted"), TOPICS,
                      compressed=True) as (_, probe):
        probe.pose_position = INSIDE
        yield probe


@pytest.fixture
def enabled(node):
    """The shared node, enabled (each test sets up the state it needs: any one runs alone, in any order)."""
    assert node.enable(True).success
    return node


@pytest.fixture
def streaming(enabled):
    """The enabled node with JPEG images at 20 Hz plus the end-effector pose in node.pose_position."""
    node = enabled
    node.pose_position = INSIDE
    with node.stream(jpeg_image(), pose=lambda: node.pose_position):
        yield node


@pytest.fixture
def streaming_disabled(node):
    """The node disabled (as it starts: enabled_on_start false), with images and poses streaming."""
    assert node.enable(False).success
    node.pose_position = INSIDE
    with node.stream(jpeg_image(), pose=lambda: node.pose_position):
        yield node


def counter(probe: Probe, name: str) -> int:
    return int(probe.state().get(name, "0"))


def test_disabled_at_start_runs_the_model_but_never_moves(streaming_disabled):
    node = streaming_disabled
    t0 = time.monotonic()
    node.instruct("move")
    node.wait_state("disabled")
    wait_until(lambda: node.actions.since(t0), what="~/action while disabled (dry run)")
    node.assert_still(time.monotonic(), count=15)
    assert not node.grippers.since(t0), "no gripper command while disabled"
    reply = node.enable(True)
    assert reply.success and "enabled" in reply.message
    msg = node.wait_steady_motion()
    assert np.allclose(twist_values(msg)[:3], np.array(MOVE_ACTION[:3]) / PERIOD)
    assert np.allclose(twist_values(msg)[3:], [0.0, 0.0, MOVE_ACTION[5] / PERIOD])
    assert node.grippers.last().data == 1.0


def test_token_ids_are_decoded_with_the_robot_profile(streaming):
    node = streaming
    node.instruct("tokens")
    t0 = time.monotonic()
    wait_until(lambda: node.actions.since(t0), what="a decoded action")
    action = np.array(node.actions.since(t0)[-1][1].data)
    assert np.allclose(action[:6], MOVE_ACTION[:6], atol=0.003)  # within one bin
    assert action[6] == pytest.approx(1.0, abs=0.008)  # gripper is not unnormalized: the top bin center
    node.wait_state("active")


def test_gripper_close_command(streaming):
    node = streaming
    node.instruct("close")
    wait_until(lambda: node.grippers.last() is not None and node.grippers.last().data == 0.0, what="gripper 0.0")
    node.instruct("move")
    wait_until(lambda: node.grippers.last().data == 1.0, what="gripper 1.0")


@pytest.mark.parametrize("instruction,counter_name,message", [
    ("nan", "actions_rejected", "non-finite action values: y=nan"),
    ("raise", "policy_errors", "endpoint unreachable"),
    ("six ids", "policy_errors", "token_ids must be 7 integers"),
    ("bad ids", "actions_rejected", "not action tokens"),
])
def test_backend_failures_stop_the_robot_until_a_good_action(streaming, instruction, counter_name, message):
    node = streaming
    node.instruct("move")
    node.wait_motion()
    before = counter(node, counter_name)
    node.instruct(instruction)
    state = node.wait_state("fault")
    assert message in state["last_fault"], state
    node.assert_still(node.wait_stop())
    wait_until(lambda: counter(node, counter_name) > before, what=f"{counter_name} to grow")
    node.instruct("move")
    node.wait_state("active")
    node.wait_motion()


def test_a_frame_published_again_is_not_a_new_frame(node):
    """Same stamp as the frame before: counted as repeated, not given to the model (magma_sim resends
    a lockstep frame whose reply is late, since camera frames are best effort)."""
    msg = jpeg_image()
    names = ("images_received", "images_repeated", "images_too_old", "images_out_of_order")

    def quiet_since(begun: float) -> dict[str, str]:
        """The newest diagnostics once images_received has not changed for more than a diagnostics
        period, judged only on diagnostics that arrived after ``begun`` (monotonic): then no frame
        sent before is still on its way, and every counter of the frames sent has settled. (Two
        diagnostics in a row are not enough: a state change publishes one at once, so two may come
        within milliseconds, even before an earlier test's stream ended.)"""
        def quiet() -> dict[str, str] | None:
            recent = [(t, values) for t, (_, values) in list(node.diagnostics.items) if t >= begun]
            if not recent:
                return None
            newest_t, newest = recent[-1]
            if any(newest_t - t > DIAGNOSTICS_PERIOD_S and values["images_received"] == newest["images_received"]
                   for t, values in recent):  # the counters only grow: equal means no frame in between
                return newest
            return None
        return wait_until(quiet, 60, what=f"the camera topic quiet for {DIAGNOSTICS_PERIOD_S} s: {node.state()}")

    def copies_of_one_frame() -> dict[str, int]:
        """Publish one freshly stamped frame until three copies arrived; the counters' changes."""
        start = quiet_since(time.monotonic())
        msg.header.stamp = node.node.get_clock().now().to_msg()

        def three_arrived() -> bool:
            if int(node.state().get("images_received", 0)) - int(start["images_received"]) >= 3:
                return True
            node.image_pub.publish(msg)  # best effort, newest frame only: send until three arrived
            return False

        wait_until(three_arrived, 60, what=f"three copies of one frame received: {node.state()}")
        end = quiet_since(time.monotonic())
        return {name: int(end[name]) - int(start[name]) for name in names}

    for _ in range(5):
        change = copies_of_one_frame()
        if change["images_too_old"] == 0:
            break
        # a frame arrived more than max_image_age_s after its stamp (a loaded machine): if it was the
        # first copy, no copy of that stamp is admitted, so none can be a repeat; try a new stamp
    assert change["images_too_old"] == 0, f"every attempt had a frame that arrived too late: {change}"
    assert change["images_repeated"] == change["images_received"] - 1, f"all but the first are repeats: {change}"


def test_bad_jpeg_stops_until_a_good_image(enabled):
    from sensor_msgs.msg import CompressedImage

    node = enabled
    node.instruct("move")
    with node.stream(jpeg_image(), pose=lambda: INSIDE):
        node.wait_motion()
    before = counter(node, "images_rejected")
    with node.stream(CompressedImage(format="jpeg", data=b"\xff\xd8garbage"), pose=lambda: INSIDE):
        state = node.wait_state("fault")
        assert "cannot decode compressed image" in state["last_fault"]
        node.wait_stop()
    assert counter(node, "images_rejected") > before
    with node.stream(jpeg_image(), pose=lambda: INSIDE):
        node.wait_state("active")
        node.wait_motion()


@pytest.mark.parametrize("text,message", [("   ", "empty"), ("x" * 51, "51 characters, more than")])
def test_bad_instructions_stop_until_a_good_one(streaming, text, message):
    node = streaming
    node.instruct("move")
    node.wait_motion()
    before = counter(node, "instructions_rejected")
    node.instruct(text)
    state = node.wait_state("fault")
    assert message in state["last_fault"]
    node.wait_stop()
    assert counter(node, "instructions_rejected") == before + 1
    node.instruct("move")
    node.wait_state("active")
    node.wait_motion()


def test_workspace_limit_with_end_effector_pose(streaming):
    node = streaming
    node.instruct("move")
    node.wait_motion()
    limit = 0.001 / PERIOD + 1e-9
    node.pose_position = (0.3, 0.0, 0.399)  # 1 mm below the box top: +z motion must be removed
    t0 = time.monotonic()
    # once the new pose has reached the node, every further command respects it
    wait_until(lambda: any(not is_zero(m) and twist_values(m)[2] <= limit for _, m in node.twists.since(t0)),
               what="motion limited near the box top")
    t1 = time.monotonic()
    moving = wait_until(lambda: (lambda v: v if len(v) >= 10 else None)(
        [twist_values(m) for _, m in node.twists.since(t1) if not is_zero(m)]), what="ten more moving commands")
    assert all(v[2] <= limit for v in moving), moving[:3]
    # x and y untouched (once past the acceleration ramp at the start of a hold)
    assert any(np.allclose(v[:2], np.array(MOVE_ACTION[:2]) / PERIOD) for v in moving), moving
    node.pose_position = INSIDE


def test_stale_or_foreign_frame_pose_stops(enabled):
    node = enabled
    node.instruct("move")
    with node.stream(jpeg_image()):  # images but no pose
        node.wait_state("no_ee_pose")
        node.wait_stop()
        node.pose(INSIDE, frame="world")
        state = node.wait_state("fault")
        assert "frame 'world', expected 'base_link'" in state["last_fault"]


def test_slow_model_never_delays_the_publish_timer_and_frames_are_dropped(streaming):
    node = streaming
    dropped = counter(node, "images_dropped")
    node.instruct("slow")
    node.wait_actions(1)
    # while the model spends 0.6 s on one prediction, the node keeps commanding (at 50 Hz: ~30 twists;
    # the gap statistics are printed by bench/node_timing.py)
    first, second = node.wait_actions(2)
    during = [m for t, m in node.twists.since(first) if t < second]
    assert len(during) >= 5, f"only {len(during)} twists while the model was busy"
    wait_until(lambda: counter(node, "images_dropped") > dropped + 5, what="dropped frames counted")
    node.instruct("move")


def test_action_timeout_when_the_model_is_slower_than_allowed(streaming):
    node = streaming
    assert node.set_params(action_timeout_s=0.3)[0].successful
    try:
        node.instruct("slow")  # 0.6 s per prediction
        state = node.wait_state("action_timeout")
        assert state["enabled"] == "true"
        node.wait_stop()
    finally:
        assert node.set_params(action_timeout_s=2.0)[0].successful
    node.instruct("move")
    node.wait_state("active")


def test_parameter_changes_are_validated(node):
    results = node.set_params(image_timeout_s=100.0)
    assert not results[0].successful and "out of range" in results[0].reason
    results = node.set_params(workspace_min=[0.1, 0.2])
    assert not results[0].successful and "workspace_min: expected" in results[0].reason
    results = node.set_params(workspace_min=[0.1, 0.2, 0.9])
    assert not results[0].successful and "workspace_min[2]" in results[0].reason
    results = node.set_params(control_rate_hz=80.0)
    assert not results[0].successful and "publish_rate_hz" in results[0].reason
    results = node.set_params(robot="google_robot")
    assert not results[0].successful and "read-only" in results[0].reason.lower()
    results = node.set_params(backend="fixed")
    assert not results[0].successful
    assert node.set_params(frame_id="tool0")[0].successful
    try:
        wait_until(lambda: node.twists.last().header.frame_id == "tool0", what="twists in tool0")
    finally:
        assert node.set_params(frame_id="")[0].successful
    wait_until(lambda: node.twists.last().header.frame_id == "base_link", what="twists back in base_link")


@pytest.mark.parametrize("params,message", [
    ({"robot": "no_such_robot"}, "unknown robot 'no_such_robot'"),
    ({"backend": "fixed", "fixed_action": [0.1, 0.2]}, "fixed_action: expected 7 values"),
    ({"backend": "node_support:missing"}, "has no function 'missing'"),
    ({"max_linear_speed": -1.0}, "out of range"),
])
def test_bad_start_up_parameters_exit_2_with_the_reason(console_script, params, message):
    result = run_node_expecting_exit(console_script("magma_node"), params)
    assert result.returncode == 2, result.stderr + result.stdout
    assert message in result.stderr
