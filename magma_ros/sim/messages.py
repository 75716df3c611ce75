"""The ROS messages ``magma_sim`` publishes, built from the simulated world's state. Message types
come from :mod:`magma_ros.interface`; imported by the node only (needs the ROS message packages)."""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from ..interface import CLOCK, EE_POSE, IMAGE, JOINT_STATES, SIM_STATUS, message_class

Clock = message_class(CLOCK.type)
Image = message_class(IMAGE.type)
JointState = message_class(JOINT_STATES.type)
PoseStamped = message_class(EE_POSE.type)
String = message_class(SIM_STATUS.type)
TimeMsg = message_class("builtin_interfaces/msg/Time")

CAMERA_FRAME = "camera"


def time_msg(ns: int) -> Any:
    """builtin_interfaces/Time of ``ns`` nanoseconds."""
    return TimeMsg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def clock_msg(ns: int) -> Any:
    """rosgraph_msgs/Clock reading ``ns`` nanoseconds."""
    clock = Clock()
    clock.clock = time_msg(ns)
    return clock


def pose_msg(stamp: Any, frame: str, position: Sequence[float], orientation: Sequence[float]) -> Any:
    """PoseStamped of a position and an (x, y, z, w) quaternion."""
    pose = PoseStamped()
    pose.header.stamp, pose.header.frame_id = stamp, frame
    pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in position)
    (pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z,
     pose.pose.orientation.w) = (float(v) for v in orientation)
    return pose


def joint_state_msg(stamp: Any, names: Sequence[str], positions: np.ndarray, velocities: np.ndarray) -> Any:
    """JointState of the arm's joints."""
    joints = JointState()
    joints.header.stamp = stamp
    joints.name, joints.position, joints.velocity = list(names), positions.tolist(), velocities.tolist()
    return joints


def image_msg(stamp: Any, pixels: np.ndarray) -> Any:
    """An rgb8 Image of an H x W x 3 uint8 array."""
    msg = Image()
    msg.header.stamp, msg.header.frame_id = stamp, CAMERA_FRAME
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, pixels.shape[1] * 3
    msg.data = pixels.tobytes()
    return msg


def status_msg(status: dict[str, Any]) -> Any:
    """The episode status as a JSON String."""
    return String(data=json.dumps(status))
