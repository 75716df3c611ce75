"""magma_node (fixed backend, as a process): a lowered speed limit or control rate binds the
action already held, from the first command published after the change is acknowledged (it used
to keep the old speed until the hold ended)."""
from __future__ import annotations

import time

import numpy as np
import pytest
from node_support import Probe, is_zero, rgb_image, running_node, topic_params, topics_under, twist_values, wait_until
from safety_support import stamp_s

TOPICS = topics_under("sc_lim")
RATE_HZ = 1.0  # each action held 1 s, a new one every second: a change lands in the middle of a hold
ACTION = (0.04, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # 0.04 m/s in x at 1 Hz (per-axis limit 0.05 m/s)
LINEAR_STEP = 0.05  # bridge_orig's max_linear_step (m): per-axis limit = step x control rate


@pytest.fixture
def held(console_script, tmp_path):
    params = {"backend": "fixed", "fixed_action": ACTION, "enabled_on_start": True, "instruction": "limit test",
              "control_rate_hz": RATE_HZ, "image_timeout_s": 5.0, "action_timeout_s": 120.0,
              "max_linear_accel": 100.0, "max_angular_accel": 100.0, **topic_params(TOPICS)}
    with running_node(console_script, "limits_node", params, tmp_path, TOPICS) as (node, probe):
        with probe.stream(rgb_image(), rate_hz=10.0):
            probe.wait_motion(60)
            yield node, probe


def linear_speeds_after(probe: Probe, t: float) -> list[np.ndarray]:
    return [np.array(twist_values(m)[:3]) for _, m in list(probe.twists.items) if stamp_s(m) > t]


def wait_moving_after(probe: Probe, t: float) -> None:
    wait_until(lambda: any(v.any() for v in linear_speeds_after(probe, t)), 30,
               what="a moving twist stamped after the change")


def test_lowered_max_linear_speed_binds_the_held_action(held):
    node, probe = held
    before = next(m for _, m in reversed(probe.twists.items) if not is_zero(m))
    assert np.isclose(twist_values(before)[0], 0.04)
    assert all(r.successful for r in probe.set_params(max_linear_speed=0.01))
    acknowledged = time.time()
    wait_moving_after(probe, acknowledged)  # still moving (the same held action), but slower
    speeds = linear_speeds_after(probe, acknowledged)
    assert max(np.linalg.norm(v) for v in speeds) <= 0.01 + 1e-9, max(np.linalg.norm(v) for v in speeds)


def test_lowered_control_rate_binds_the_per_axis_limits_of_the_held_action(held):
    node, probe = held
    new_rate = 0.5  # per-axis limit 0.05 x 0.5 = 0.025 m/s, below the held 0.04 m/s
    assert all(r.successful for r in probe.set_params(control_rate_hz=new_rate))
    acknowledged = time.time()
    wait_moving_after(probe, acknowledged)
    speeds = linear_speeds_after(probe, acknowledged)
    assert max(np.abs(v).max() for v in speeds) <= LINEAR_STEP * new_rate + 1e-9


def test_without_a_post_set_callback_api_the_on_set_callback_applies(monkeypatch):
    """Humble's rclpy has no add_post_set_parameters_callback: validation applies the change itself."""
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from magma_ros.policy.fixed import FixedPolicy
    from magma_ros.ros.node import MagmaNode

    monkeypatch.delattr(Node, "add_post_set_parameters_callback", raising=False)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = MagmaNode(FixedPolicy(ACTION), node_name="humble_like_node", context=context,
                     parameter_overrides=[Parameter("twist_topic", value="/sc_humble/twist")])
    try:
        assert not node._post_set
        refused = node.set_parameters([Parameter("max_linear_speed", value=-1.0)])[0]
        assert not refused.successful and "max_linear_speed" in refused.reason
        assert node.set_parameters([Parameter("max_linear_speed", value=0.01)])[0].successful
        assert node.supervisor.limits.max_linear_speed == 0.01
    finally:
        node.close()
        context.shutdown()
