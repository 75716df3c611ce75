"""Recorded messages -> numpy: images, 7-vector actions, and twists back to end-effector deltas.

Works on ``rosbags`` messages and on rclpy messages alike (same field names).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..actions.rotation import rotvec_to_euler_xyz
from ..actions.tokenizer import ACTION_DIM
from ..image_msgs import ImageError, compressed_to_rgb
from ..image_msgs import image_to_rgb as raw_to_rgb
from ..interface import COMPRESSED_IMAGE_TYPE, GRIPPER, IMAGE, INSTRUCTION, TELEOP_ACTION, TWIST

IMAGE_TYPES = (IMAGE.type, COMPRESSED_IMAGE_TYPE)
INSTRUCTION_TYPES = (INSTRUCTION.type,)
ARRAY_TYPES = (TELEOP_ACTION.type, "std_msgs/msg/Float32MultiArray")
TWIST_TYPES = (TWIST.type,)
GRIPPER_TYPES = (GRIPPER.type, "std_msgs/msg/Float32")
MAX_ABS_VALUE = 1e6  # larger action values are not actions and would overflow the squared errors


class ConversionError(ValueError):
    """A message whose content cannot be used (the caller adds topic and time)."""


def image_to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """``sensor_msgs/Image`` or ``CompressedImage`` -> H x W x 3 uint8 RGB, with the node's conversion
    (a view of the message data where the layout allows)."""
    try:
        return compressed_to_rgb(msg) if msgtype.endswith("CompressedImage") else raw_to_rgb(msg)
    except ImageError as exc:
        raise ConversionError(str(exc)) from None


def instruction_text(msg: Any) -> str:
    """The instruction of a ``std_msgs/String``, stripped."""
    return str(msg.data).strip()


def array_to_action(msg: Any) -> np.ndarray:
    """A ``Float64MultiArray`` holding one 7-vector (x y z roll pitch yaw gripper) -> float64 array."""
    values = np.asarray(msg.data, dtype=np.float64).reshape(-1)
    if values.size != ACTION_DIM:
        raise ConversionError(f"expected {ACTION_DIM} values (x y z roll pitch yaw gripper), got {values.size}")
    check_action_values(values, "values")
    return values


def twist_to_delta(msg: Any, dt: float) -> np.ndarray:
    """A ``TwistStamped`` -> the 6 arm deltas of one control period ``dt`` (inverse of delta_to_twist)."""
    twist = msg.twist
    linear = np.array([twist.linear.x, twist.linear.y, twist.linear.z], dtype=np.float64)
    angular = np.array([twist.angular.x, twist.angular.y, twist.angular.z], dtype=np.float64)
    check_action_values(np.concatenate([linear, angular]), "twist values")
    return np.concatenate([linear * dt, rotvec_to_euler_xyz(angular * dt)])


def gripper_value(msg: Any) -> float:
    """The value of a ``std_msgs/Float64`` gripper command."""
    value = float(msg.data)
    check_action_values(np.asarray([value]), "gripper value")
    return value


def check_action_values(values: np.ndarray, what: str) -> None:
    """``ConversionError`` unless every value is finite and within ``MAX_ABS_VALUE``."""
    if not np.all(np.isfinite(values)):
        raise ConversionError(f"{what} must be finite, got {values.tolist()}")
    if np.any(np.abs(values) > MAX_ABS_VALUE):
        raise ConversionError(f"{what} must be within +-{MAX_ABS_VALUE:g}, got {values.tolist()}")
