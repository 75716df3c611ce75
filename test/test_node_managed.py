"""magma_node --ros-args -p managed:=true, driven through every transition with lifecycle_msgs
services (as ``ros2 lifecycle set`` does): the twists it publishes and its state after each, a
configure that fails (bad model path), a deactivate while a slow model call is in flight, and
cleanup releasing the policy (in process: the model object is garbage-collected)."""
from __future__ import annotations

import gc
import threading
import time

import pytest
from node_support import (
    MOVE_ACTION,
    NodeProcess,
    Probe,
    is_zero,
    private_name,
    rgb_image,
    stamp_s,
    topic_params,
    topics_under,
    wait_until,
)

from magma_ros.interface import CHANGE_STATE, GET_STATE

TOPICS = topics_under("managed")
BASE = {"managed": True, "backend": "fixed", "fixed_action": MOVE_ACTION, "instruction": "axis check",
        "disabled_zero_s": 0.5, "image_timeout_s": 5.0, "action_timeout_s": 10.0, **topic_params(TOPICS)}


def change(probe: Probe, transition: str) -> bool:
    """Request ``transition`` by its label, as ``ros2 lifecycle set`` does; True when it succeeded."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(label=transition))
    return probe.call(ChangeState, private_name(probe.target, CHANGE_STATE), request, timeout=90).success


def go(managed, transition: str, expected_state: str) -> None:
    """``transition`` succeeds and leaves the node in ``expected_state``."""
    proc, probe = managed
    assert change(probe, transition), f"{transition} failed; node log:\n{proc.output()}"
    assert state(probe) == expected_state


def state(probe: Probe) -> str:
    from lifecycle_msgs.srv import GetState

    return probe.call(GetState, private_name(probe.target, GET_STATE), GetState.Request()).current_state.label


def moved_since(probe: Probe, since: float) -> list:
    """Non-zero twists stamped after ``since`` (wall-clock seconds)."""
    return [m for _, m in list(probe.twists.items) if stamp_s(m) > since and not is_zero(m)]


@pytest.fixture
def managed(console_script, tmp_path, request):
    """A managed magma_node (BASE parameters, updated by the test's param) and a probe; it must exit 0."""
    params = {**BASE, **getattr(request, "param", {})}
    proc = NodeProcess(console_script("magma_node"), "managed_node", params, tmp_path)
    probe = Probe("managed_node", TOPICS)
    try:
        yield proc, probe
    finally:
        probe.close()
        assert proc.stop() == 0, proc.output()


def test_every_transition_publishes_what_it_should(managed):
    proc, probe = managed
    assert state(probe) == "unconfigured"
    assert not probe.twists.items, "an unconfigured node commands nothing"

    go(managed, "configure", "inactive")
    probe.wait_stop(60)  # inactive: the stop of a disabled node
    refused = probe.enable(True)
    assert not refused.success and "not active" in refused.message

    with probe.stream(rgb_image()):
        go(managed, "activate", "active")
        probe.wait_motion(60)
        go(managed, "deactivate", "inactive")
        deactivated = time.time()
        probe.wait_stop(30)
        assert not moved_since(probe, deactivated)

        go(managed, "cleanup", "unconfigured")
        go(managed, "configure", "inactive")  # loads the policy again
        assert not moved_since(probe, deactivated)
        go(managed, "activate", "active")
        probe.wait_motion(60)

        # ~/enable works as in the unmanaged node while active
        assert probe.enable(False).success
        disabled = time.time()
        probe.wait_stop(30)
        assert not moved_since(probe, disabled)
        assert probe.enable(True).success
        probe.wait_motion(60)

        assert change(probe, "shutdown")
        shut = time.time()
    assert proc.proc.wait(30) == 0, proc.output()
    wait_until(lambda: probe.twists.items and is_zero(probe.twists.last()), 30, what="a final zero twist")
    assert not moved_since(probe, shut)


def test_estop_works_while_active_and_shutdown_from_inactive(managed):
    proc, probe = managed
    go(managed, "configure", "inactive")
    go(managed, "activate", "active")
    with probe.stream(rgb_image()):
        probe.wait_motion(60)
        probe.estop(True)
        probe.wait_state("estop")
        stopped = time.time()  # once the node reports the latched e-stop, nothing it stamps moves
        probe.wait_stop(30)
        assert not moved_since(probe, stopped)
        probe.estop(False)
        assert probe.reset().success
        probe.wait_motion(60)
        go(managed, "deactivate", "inactive")
    assert change(probe, "shutdown")  # from inactive
    assert proc.proc.wait(30) == 0, proc.output()
    wait_until(lambda: is_zero(probe.twists.last()), 30, what="a final zero twist")


BAD_MODEL = {"backend": "magma", "device": "cpu", "model": "/nonexistent/magma-model"}


@pytest.mark.parametrize("managed", [BAD_MODEL], indirect=True)
def test_failing_configure_stays_unconfigured_with_the_reason_logged(managed):
    proc, probe = managed
    assert not change(probe, "configure")
    assert state(probe) == "unconfigured"
    reasons = [line for line in proc.output().splitlines() if "configure failed:" in line]
    assert len(reasons) == 1 and "model" in reasons[0] and "/nonexistent/magma-model" in reasons[0], proc.output()
    assert not probe.twists.items
    assert change(probe, "shutdown")  # from unconfigured
    assert proc.proc.wait(30) == 0, proc.output()


@pytest.mark.parametrize("managed", [{"backend": "managed_support:slow", "control_rate_hz": 20.0}], indirect=True)
def test_a_late_model_result_does_not_move_the_robot_after_deactivate(managed):
    """Each model call takes managed_support.SLOW_S; the node calls the model back to back, so a
    deactivate always finds a call in flight. Its result (published on ~/action after the deactivate,
    after any command it caused) must not become a twist or a gripper command."""
    proc, probe = managed
    go(managed, "configure", "inactive")
    go(managed, "activate", "active")
    with probe.stream(rgb_image()):
        probe.wait_motion(60)
        assert change(probe, "deactivate")
        deactivated, actions = time.time(), len(probe.actions.items)
        since = time.monotonic()
        # two results after the deactivate: commands a first late result could cause precede the second
        wait_until(lambda: len(probe.actions.items) >= actions + 2, 30, what="two model results after the deactivate")
    assert not moved_since(probe, deactivated)
    assert not probe.grippers.since(since)


def test_cleanup_releases_the_policy_in_process():
    import managed_support
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from magma_ros.ros.managed_node import LifecycleMagmaNode

    ok = TransitionCallbackReturn.SUCCESS

    context = rclpy.Context()
    rclpy.init(context=context)
    params = {"managed": True, "backend": "managed_support:tracked", "fixed_action": list(MOVE_ACTION),
              "twist_topic": "/managed_gc/twist"}
    node = LifecycleMagmaNode(node_name="managed_gc_node", context=context,
                              parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    try:
        managed_support.created.clear()
        assert node.trigger_configure() == ok
        assert len(managed_support.created) == 1
        model = managed_support.created[0]()
        assert model is not None and not model.closed
        del model
        assert node.trigger_cleanup() == ok
        gc.collect()
        assert managed_support.created[0]() is None, gc.get_referrers(managed_support.created[0]())
        assert node.trigger_configure() == ok and managed_support.created[1]() is not None
    finally:
        node.close()
        context.shutdown()


def test_cleanup_waits_for_a_model_call_in_flight_before_closing_the_policy():
    """In process, with images streaming to an active node whose model call takes SLOW_S (longer
    than the node waits for inference at shutdown): cleanup closes the policy only after the call."""
    import managed_support
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from magma_ros.ros.managed_node import LifecycleMagmaNode

    topics = topics_under("managed_inflight")
    context = rclpy.Context()
    rclpy.init(context=context)
    params = {"managed": True, "backend": "managed_support:tracked_slow", "fixed_action": list(MOVE_ACTION),
              "instruction": "wave", "image_timeout_s": 5.0, "action_timeout_s": 10.0, **topic_params(topics)}
    node = LifecycleMagmaNode(node_name="managed_inflight_node", context=context,
                              parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    probe = Probe("managed_inflight_node", topics)
    try:
        managed_support.created.clear()
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        model = managed_support.created[0]()
        with probe.stream(rgb_image()):
            probe.wait_motion(60)
            model.called.clear()
            assert model.called.wait(30), "no model call after the first action"
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert model.closed and not model.closed_during_call
    finally:
        probe.close()
        node.close()
        executor.shutdown()
        context.shutdown()
