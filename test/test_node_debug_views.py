"""~/debug_image and ~/markers of an in-process magma_node (fixed backend): nothing is drawn or built
while nobody subscribes; a subscriber gets one annotated frame per prediction whose arrow points the
way the commanded planar motion goes, and markers whose arrow starts at the end effector and points
along the commanded linear motion in the base frame, with the profile's workspace box."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from node_support import MOVE_ACTION, Probe, private_name, rgb_image, topic_params, topics_under, wait_until
from test_debug_drawing import arrow_direction

from magma_ros.interface import DEBUG_IMAGE, MARKERS

NAME = "debug_views_node"
TOPICS = topics_under("debug_views", ee_pose=True)
EE = (0.3, 0.05, 0.2)
# MOVE_ACTION per step at bridge_orig's 5 Hz, in m/s
LINEAR = np.array(MOVE_ACTION[:3]) * 5.0


@pytest.fixture
def node(monkeypatch):
    """The node with its drawing and marker building counted, and a probe streaming images and poses."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from magma_ros.policy.fixed import FixedPolicy
    from magma_ros.ros import debug_views
    from magma_ros.ros.node import MagmaNode

    calls = {"draw": 0, "markers": 0}
    draw, markers = debug_views.debug_drawing.draw_overlay, debug_views.motion_markers

    def counted(name, function):
        def wrapper(*args):
            calls[name] += 1
            return function(*args)
        return wrapper

    monkeypatch.setattr(debug_views.debug_drawing, "draw_overlay", counted("draw", draw))
    monkeypatch.setattr(debug_views, "motion_markers", counted("markers", markers))
    context = rclpy.Context()
    rclpy.init(context=context)
    params = {"enabled_on_start": True, "instruction": "wave", "image_timeout_s": 5.0, **topic_params(TOPICS)}
    magma = MagmaNode(FixedPolicy(list(MOVE_ACTION)), node_name=NAME, context=context,
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(magma)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    probe = Probe(NAME, TOPICS)
    try:
        with probe.stream(rgb_image(), rate_hz=10.0, pose=lambda: EE):
            yield probe, calls
    finally:
        probe.close()
        magma.close()
        executor.shutdown()
        context.shutdown()


def subscribe(probe: Probe, topic, msg_type) -> list:
    received: list = []
    probe.node.create_subscription(msg_type, private_name(NAME, topic), received.append, topic.qos.profile())
    return received


def test_nothing_is_drawn_without_a_subscriber_and_the_arrow_shows_the_motion(node):
    from sensor_msgs.msg import Image

    probe, calls = node
    probe.wait_actions(3, 60)
    assert calls == {"draw": 0, "markers": 0}

    images = subscribe(probe, DEBUG_IMAGE, Image)
    wait_until(lambda: len(images) >= 2, 60, what="two debug images")
    assert calls["draw"] >= 2 and calls["markers"] == 0
    assert calls["draw"] <= len(probe.actions.items)  # one per prediction at most
    msg = images[-1]
    assert msg.encoding == "rgb8" and msg.header.frame_id == "base_link"
    pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    # seen from above: +x up, +y left
    expected = np.array([-LINEAR[1], -LINEAR[0]]) / np.hypot(LINEAR[0], LINEAR[1])
    direction = arrow_direction(pixels)
    assert direction is not None and np.dot(direction, expected) > np.cos(np.radians(8)), (direction, expected)


def test_markers_arrow_starts_at_the_end_effector_along_the_commanded_motion(node):
    from visualization_msgs.msg import Marker, MarkerArray

    probe, calls = node
    arrays = subscribe(probe, MARKERS, MarkerArray)
    arrows = wait_until(lambda: [m for a in arrays for m in a.markers if m.type == Marker.ARROW
                                 and m.action == Marker.ADD], 60, what="a motion arrow marker")
    assert calls["draw"] == 0
    arrow = arrows[-1]
    assert arrow.header.frame_id == "base_link"
    start, end = (np.array([p.x, p.y, p.z]) for p in arrow.points)
    assert np.allclose(start, EE)
    assert np.allclose((end - start) / np.linalg.norm(end - start), LINEAR / np.linalg.norm(LINEAR))
    box = next(m for m in arrays[-1].markers if m.type == Marker.CUBE)
    centre = np.array([box.pose.position.x, box.pose.position.y, box.pose.position.z])
    size = np.array([box.scale.x, box.scale.y, box.scale.z])
    assert np.allclose(centre - size / 2, (0.1, -0.3, 0.02)) and np.allclose(centre + size / 2, (0.5, 0.3, 0.4))
