"""The annotated camera frame of ``~/debug_image``, drawn with PIL (no ROS, no camera calibration).

The commanded planar motion is drawn as seen from above the robot base: +x (forward) points up
in the image and +y (left) points left, from the image centre, its length the planar speed as a
share of ``max_linear_speed``. Vertical motion (z) is a bar on the right edge (up = +z), rotation
three short bars (roll, pitch, yaw) at the bottom left, each filled from its middle.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

MIN_WIDTH = 320  # smaller frames are enlarged (nearest neighbour) so that the text stays legible
ARROW_RGB = (255, 0, 255)  # the planar motion arrow; tests find it by this colour
BAR_RGB = (0, 200, 255)
TEXT_RGB = (255, 255, 255)
SHADE_RGB = (0, 0, 0)
ARROW_REACH = 0.4  # an arrow at max_linear_speed reaches this share of the smaller image side
BAR_LENGTH = 0.3  # a bar's length as a share of the image height (z) or width (rotation)


@dataclass(frozen=True)
class Overlay:
    """What the model wanted for one frame and what the node made of it."""

    instruction: str
    state: str  # the safety state (SafetyState value)
    latency_s: float  # the model call
    gripper: float  # 1.0 open, 0.0 closed
    linear: tuple[float, float, float]  # m/s, base frame
    angular: tuple[float, float, float]  # rad/s, base frame
    max_linear_speed: float  # m/s: full arrow and z bar
    max_angular_speed: float  # rad/s: full rotation bars


def draw_overlay(image: np.ndarray, overlay: Overlay) -> np.ndarray:
    """``image`` (H x W x 3 uint8 RGB) annotated with ``overlay``, as a new H' x W' x 3 uint8 array
    (enlarged to at least MIN_WIDTH pixels wide)."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.ascontiguousarray(image), "RGB")
    if picture.width < MIN_WIDTH:
        scale = -(-MIN_WIDTH // picture.width)
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    size = max(11, width // 32)  # text height (px)
    draw.font = _font(size)
    line = size + 4
    _arrow(draw, width, height, overlay)
    _z_bar(draw, width, height, line, overlay.linear[2] / overlay.max_linear_speed)
    for i, (label, value) in enumerate(zip("rpy", overlay.angular)):
        _rotation_bar(draw, width, height - line * (3 - i) - line, line, label, value / overlay.max_angular_speed)
    _text(draw, (4, 2), overlay.instruction or "(no instruction)")
    gripper = "open" if overlay.gripper >= 0.5 else "closed"
    _text(draw, (width // 3, height - line), f"{overlay.state}  {1000.0 * overlay.latency_s:.0f} ms  gripper {gripper}")
    return np.asarray(picture, dtype=np.uint8).copy()


def _arrow(draw, width: int, height: int, overlay: Overlay) -> None:
    vx, vy = overlay.linear[0], overlay.linear[1]
    share = min(float(np.hypot(vx, vy)) / overlay.max_linear_speed, 1.0)
    if share == 0.0:
        return
    cx, cy = width / 2, height / 2
    length = share * ARROW_REACH * min(width, height)
    angle = np.arctan2(vy, vx)
    dx, dy = -np.sin(angle), -np.cos(angle)  # image direction of +x is up, of +y is left
    tip = (cx + dx * length, cy + dy * length)
    thickness = max(2, min(width, height) // 60)
    draw.line([(cx, cy), tip], fill=ARROW_RGB, width=thickness)
    head = max(6.0, 0.3 * length)
    for side in (-1.0, 1.0):  # two barbs, 25 degrees off the shaft
        c, s = np.cos(np.radians(25) * side), np.sin(np.radians(25) * side)
        bx, by = -(dx * c - dy * s), -(dx * s + dy * c)
        draw.line([tip, (tip[0] + bx * head, tip[1] + by * head)], fill=ARROW_RGB, width=thickness)


def _z_bar(draw, width: int, height: int, line: int, share: float) -> None:
    x0, x1 = width - 14, width - 6
    mid, half = height / 2, BAR_LENGTH * height / 2
    draw.rectangle([x0, mid - half, x1, mid + half], outline=TEXT_RGB)
    end = mid - float(np.clip(share, -1.0, 1.0)) * half
    draw.rectangle([x0, min(mid, end), x1, max(mid, end)], fill=BAR_RGB)
    _text(draw, (x0 - 2, mid - half - line - 2), "z")


def _rotation_bar(draw, width: int, y0: float, line: int, label: str, share: float) -> None:
    x0, half, thick = line * 1.2, BAR_LENGTH * width / 4, line * 0.6
    mid = x0 + half
    draw.rectangle([x0, y0, x0 + 2 * half, y0 + thick], outline=TEXT_RGB)
    end = mid + float(np.clip(share, -1.0, 1.0)) * half
    draw.rectangle([min(mid, end), y0, max(mid, end), y0 + thick], fill=BAR_RGB)
    _text(draw, (4, y0 - line * 0.2), label)


@functools.lru_cache(maxsize=8)
def _font(size: int):
    """PIL's default font at ``size`` pixels (Pillow >= 10.1 scales it), else its fixed bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 (Ubuntu 22.04's): no sizes
        return ImageFont.load_default()


def _text(draw, xy: tuple[float, float], text: str) -> None:
    """``text`` with a dark outline, legible on any frame."""
    draw.text(xy, text, fill=TEXT_RGB, stroke_width=1, stroke_fill=SHADE_RGB)
