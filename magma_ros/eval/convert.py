"""Recorded messages -> numpy: images, 7-vector actions, and twists back to end-effector deltas.

Works on ``rosbags`` messages and on rclpy messages alike (same field names).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..actions.tokenizer import ACTION_DIM

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INSTRUCTION_TYPES = ("std_msgs/msg/String",)
ARRAY_TYPES = ("std_msgs/msg/Float64MultiArray", "std_msgs/msg/Float32MultiArray")
TWIST_TYPES = ("geometry_msgs/msg/TwistStamped",)
GRIPPER_TYPES = ("std_msgs/msg/Float64", "std_msgs/msg/Float32")

# encoding -> (channels, channel order of the first three: RGB or BGR)
_RAW_ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
    "8UC3": (3, (0, 1, 2)),
    "8UC1": (1, (0, 0, 0)),
}


class ConversionError(ValueError):
    """A message whose content cannot be used (the caller adds topic and time)."""


def image_to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """``sensor_msgs/Image`` (8-bit encodings) or ``CompressedImage`` -> H x W x 3 uint8 RGB
    (a view of the message data where the layout allows)."""
    if msgtype.endswith("CompressedImage"):
        return _decode_compressed(msg)
    encoding = str(msg.encoding)
    if encoding not in _RAW_ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r} (supported: {', '.join(_RAW_ENCODINGS)})")
    channels, order = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = _uint8(msg.data)
    if height <= 0 or width <= 0 or step < width * channels or data.size < step * height:
        raise ConversionError(f"image {width}x{height} {encoding} with step {step} does not fit its "
                              f"{data.size} data bytes")
    rows = data[: step * height].reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels[:, :, :3] if order == (0, 1, 2) else pixels[:, :, 2::-1]  # views, no copy


def _decode_compressed(msg: Any) -> np.ndarray:
    try:
        import cv2
    except ImportError:
        raise ConversionError("CompressedImage needs OpenCV: pip install 'magma_ros[compressed]'") from None
    data = _uint8(msg.data)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(f"CompressedImage ({msg.format!r}) could not be decoded")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _uint8(data: Any) -> np.ndarray:
    """Message ``uint8[]`` data (ndarray, bytes, array.array or list) as a flat uint8 array."""
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def instruction_text(msg: Any) -> str:
    """The instruction of a ``std_msgs/String``, stripped."""
    return str(msg.data).strip()


def array_to_action(msg: Any) -> np.ndarray:
    """A ``Float64MultiArray`` holding one 7-vector (x y z roll pitch yaw gripper) -> float64 array."""
    values = np.asarray(msg.data, dtype=np.float64).reshape(-1)
    if values.size != ACTION_DIM:
        raise ConversionError(f"expected {ACTION_DIM} values (x y z roll pitch yaw gripper), got {values.size}")
    if not np.all(np.isfinite(values)):
        raise ConversionError(f"values must be finite, got {values.tolist()}")
    return values


def twist_to_delta(msg: Any, dt: float) -> np.ndarray:
    """A ``TwistStamped`` -> the 6 arm deltas of one control period ``dt`` (inverse of delta_to_twist)."""
    twist = msg.twist
    linear = np.array([twist.linear.x, twist.linear.y, twist.linear.z], dtype=np.float64)
    angular = np.array([twist.angular.x, twist.angular.y, twist.angular.z], dtype=np.float64)
    if not (np.all(np.isfinite(linear)) and np.all(np.isfinite(angular))):
        raise ConversionError("twist values must be finite")
    return np.concatenate([linear * dt, rotvec_to_euler_xyz(angular * dt)])


def gripper_value(msg: Any) -> float:
    """The value of a ``std_msgs/Float64`` gripper command."""
    value = float(msg.data)
    if not np.isfinite(value):
        raise ConversionError(f"gripper value must be finite, got {value!r}")
    return value


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """A rotation vector (axis * angle) -> 3 x 3 rotation matrix (Rodrigues)."""
    v = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * kx + (1.0 - np.cos(angle)) * (kx @ kx)


def matrix_to_euler_xyz(m: np.ndarray) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll) -> (roll, pitch, yaw), pitch in [-pi/2, pi/2]."""
    pitch = np.arcsin(np.clip(-m[2, 0], -1.0, 1.0))
    if abs(m[2, 0]) < 1.0 - 1e-9:
        roll = np.arctan2(m[2, 1], m[2, 2])
        yaw = np.arctan2(m[1, 0], m[0, 0])
    else:  # gimbal lock: roll and yaw share one axis; put it all in yaw
        roll = 0.0
        yaw = np.arctan2(-m[0, 1], m[1, 1])
    return np.array([roll, pitch, yaw], dtype=np.float64)


def rotvec_to_euler_xyz(rotvec: np.ndarray) -> np.ndarray:
    """A rotation vector -> roll/pitch/yaw (extrinsic xyz), the inverse of ``euler_xyz_to_rotvec``."""
    return matrix_to_euler_xyz(rotvec_to_matrix(rotvec))
