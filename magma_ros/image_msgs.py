"""sensor_msgs Image / CompressedImage -> H x W x 3 uint8 RGB numpy arrays (views where possible).

No rclpy import: works on rclpy messages and on ``rosbags`` messages alike (same field names).
"""
from __future__ import annotations

from typing import Any

import numpy as np

# encoding -> (channels, channel order to take for RGB, or None for grey)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}


class ImageError(ValueError):
    """An image message that cannot be turned into an RGB array."""


def image_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image as H x W x 3 uint8 RGB. Colour encodings are returned as views of the
    message buffer (no copy); mono8 is expanded to three channels."""
    encoding = msg.encoding.lower()
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    channels, order = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageError(f"zero-size image ({width} x {height})")
    if step < width * channels:
        raise ImageError(f"step {step} is smaller than width x channels = {width} x {channels} for {encoding}")
    size = len(msg.data)
    if size != height * step:
        raise ImageError(f"data length {size} does not match height x step = {height} x {step} = {height * step}")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if order is None:
        return np.repeat(pixels, 3, axis=2)
    if order == (0, 1, 2):
        return pixels[:, :, :3]
    return pixels[:, :, 2::-1]


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage (JPEG, PNG, ...) as H x W x 3 uint8 RGB, decoded by OpenCV."""
    try:
        import cv2
    except ImportError:
        raise ImageError("CompressedImage needs OpenCV: pip install 'magma_ros[compressed]'") from None

    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"empty compressed image (format {msg.format!r})")
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"cannot decode compressed image (format {msg.format!r}): {exc}") from None
    if bgr is None or bgr.size == 0:
        raise ImageError(f"cannot decode compressed image (format {msg.format!r}, {data.size} bytes)")
    return bgr[:, :, ::-1]
