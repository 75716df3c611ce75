"""What the policy wants, for RViz and rqt: ``~/debug_image`` and ``~/markers``.

Both are published once per prediction (so at most at the inference rate), and only while someone
subscribes: with no subscriber, nothing is drawn or built.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker, MarkerArray

from ..actions.twist import Twist
from ..interface import DEBUG_IMAGE, MARKERS
from ..safety.limits import SafetyLimits
from . import debug_drawing

ARROW_S = 1.0  # the motion arrow spans this many seconds of the commanded linear velocity
ARROW_ID, WORKSPACE_ID = 0, 1
NAMESPACE = "magma"


class DebugViews:
    """The two publishers of a node, and the messages for one prediction."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self.image_pub = node.create_publisher(Image, DEBUG_IMAGE.name, DEBUG_IMAGE.qos.profile())
        self.markers_pub = node.create_publisher(MarkerArray, MARKERS.name, MARKERS.qos.profile())

    def show(self, image: np.ndarray, instruction: str, twist: Twist, gripper: float, latency_s: float) -> None:
        """Publish the views of one prediction (``twist`` and ``gripper`` as converted from the
        model's action, before the safety layer) to whoever subscribes."""
        node = self._node
        want_image = self.image_pub.get_subscription_count() > 0
        want_markers = self.markers_pub.get_subscription_count() > 0
        if not (want_image or want_markers):
            return
        stamp = node.get_clock().now().to_msg()
        limits, frame_id = node.supervisor.limits, node.settings.frame_id
        if want_image:
            overlay = debug_drawing.Overlay(
                instruction=instruction, state=node.supervisor.state.value, latency_s=latency_s, gripper=gripper,
                linear=tuple(float(v) for v in twist.linear), angular=tuple(float(v) for v in twist.angular),
                max_linear_speed=limits.max_linear_speed, max_angular_speed=limits.max_angular_speed)
            self.image_pub.publish(rgb_message(debug_drawing.draw_overlay(image, overlay), stamp, frame_id))
        if want_markers:
            self.markers_pub.publish(motion_markers(twist, node.supervisor.ee_position, limits, frame_id, stamp))


def rgb_message(pixels: np.ndarray, stamp: Any, frame_id: str) -> Image:
    """An H x W x 3 uint8 array as an rgb8 Image."""
    height, width = pixels.shape[:2]
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=3 * width)
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.data = pixels.tobytes()
    return msg


def motion_markers(twist: Twist, ee_position: Sequence[float] | None, limits: SafetyLimits, frame_id: str,
                   stamp: Any) -> MarkerArray:
    """The workspace box, and (with a known end-effector position) an arrow from it along the
    commanded linear motion, ARROW_S seconds long; a zero motion or unknown pose deletes the arrow."""
    arrow = _marker(ARROW_ID, frame_id, stamp)
    if ee_position is None or not np.any(twist.linear):
        arrow.action = Marker.DELETE
    else:
        arrow.type = Marker.ARROW
        start = np.asarray(ee_position, dtype=float)
        arrow.points = [_point(start), _point(start + ARROW_S * np.asarray(twist.linear, dtype=float))]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.01, 0.02, 0.03  # shaft and head diameter, head length
        arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = 1.0, 0.0, 1.0, 1.0
    box = _marker(WORKSPACE_ID, frame_id, stamp)
    box.type = Marker.CUBE
    lo, hi = np.asarray(limits.workspace_min, dtype=float), np.asarray(limits.workspace_max, dtype=float)
    box.pose.position = _point((lo + hi) / 2)
    box.pose.orientation.w = 1.0
    box.scale.x, box.scale.y, box.scale.z = (float(v) for v in hi - lo)
    box.color.r, box.color.g, box.color.b, box.color.a = 0.0, 0.8, 1.0, 0.15
    return MarkerArray(markers=[arrow, box])


def _marker(marker_id: int, frame_id: str, stamp: Any) -> Marker:
    marker = Marker(ns=NAMESPACE, id=marker_id, action=Marker.ADD)
    marker.header.frame_id = frame_id
    marker.header.stamp = stamp
    return marker


def _point(xyz: Sequence[float]) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))
