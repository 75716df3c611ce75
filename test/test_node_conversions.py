"""Message conversions and parameter validation of the node, in process (no DDS)."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from magma_ros.actions.errors import ProfileError
from magma_ros.image_msgs import ImageError, compressed_to_rgb, image_to_rgb
from magma_ros.policy.base import PolicyConfigError
from magma_ros.policy.config import BACKEND_OPTIONS
from magma_ros.ros.settings import NODE_PARAMETERS, SettingsError, build_settings, default_values

RGB = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


def make(encoding: str, pixels: np.ndarray, pad: int = 0) -> Image:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    rows = np.hstack([rows, np.zeros((h, pad), np.uint8)])
    msg = Image(height=h, width=w, encoding=encoding, step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize("encoding,pixels", [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.dstack([RGB, np.full((4, 5), 255, np.uint8)])),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.full((4, 5), 7, np.uint8)])),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_become_rgb_views(encoding, pixels, pad):
    msg = make(encoding, np.ascontiguousarray(pixels), pad)
    out = image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    assert np.array_equal(out, RGB)
    assert not out.flags.owndata, "colour images are views of the message buffer"


def test_mono8_is_expanded():
    grey = RGB[:, :, 0].copy()
    out = image_to_rgb(make("mono8", grey[:, :, None]))
    assert out.shape == (4, 5, 3) and np.array_equal(out[:, :, 1], grey)


@pytest.mark.parametrize("change,message", [
    (dict(encoding="yuv422"), "unsupported encoding 'yuv422'"),
    (dict(encoding="16UC1"), "unsupported encoding"),
    (dict(height=0), "zero-size"),
    (dict(step=10), "step 10 is smaller"),
    (dict(height=5), "data length 60 does not match height x step = 5 x 15"),
])
def test_bad_images_are_rejected_with_the_reason(change, message):
    msg = make("rgb8", RGB)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageError, match=message):
        image_to_rgb(msg)


def test_compressed_jpeg_and_bad_jpeg():
    import cv2

    ok, data = cv2.imencode(".png", RGB[:, :, ::-1])
    out = compressed_to_rgb(CompressedImage(format="png", data=data.tobytes()))
    assert np.array_equal(out, RGB)
    with pytest.raises(ImageError, match="cannot decode compressed image"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"\xff\xd8 definitely not a jpeg"))
    with pytest.raises(ImageError, match="empty compressed image"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b""))


def test_every_parameter_declared_once_and_backend_options_not_repeated():
    names = [p.name for p in NODE_PARAMETERS] + [s.name for s in BACKEND_OPTIONS]
    assert len(names) == len(set(names))
    assert {"image_topic", "twist_topic", "publish_rate_hz", "backend", "fixed_action", "workspace_min"} <= set(names)


def test_settings_resolve_profile_defaults():
    s = build_settings(default_values())
    assert s.control_rate_hz == 5.0 and s.frame_id == "base_link"
    assert s.timing.control_period_s == pytest.approx(0.2) and s.timing.publish_period_s == pytest.approx(0.02)
    assert s.limits.workspace_min == s.profile.workspace.min
    custom = build_settings(dict(default_values(), robot="google_robot", frame_id="tool0", control_rate_hz=2.0,
                                 workspace_min=[0.0, 0.0, 0.0], workspace_max=[1.0, 1.0, 1.0]))
    assert custom.control_rate_hz == 2.0 and custom.frame_id == "tool0"
    assert custom.limits.workspace_max == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("value,control_rate_hz,resolved", [
    (-1.0, 0.0, 0.4),  # two control periods of bridge_orig (5 Hz)
    (-1.0, 2.0, 1.0),  # ... of the rate in force
    (0.0, 0.0, 0.0),  # no age check
    (0.25, 0.0, 0.25),
])
def test_max_image_age_resolves_to_seconds(value, control_rate_hz, resolved):
    s = build_settings(dict(default_values(), max_image_age_s=value, control_rate_hz=control_rate_hz))
    assert s.max_image_age_s == pytest.approx(resolved)


@pytest.mark.parametrize("change,error,message", [
    (dict(robot="no_such_robot"), ProfileError, "unknown robot 'no_such_robot'"),
    (dict(image_timeout_s=0.0), SettingsError, r"image_timeout_s: must be in \[0.01, 60.0\]"),
    (dict(workspace_min=[0.0, 0.0]), SettingsError, "workspace_min: expected"),
    (dict(workspace_min=[0.0, 0.0, 2.0], workspace_max=[1.0, 1.0, 1.0]), SettingsError, r"workspace_min\[2\]"),
    (dict(control_rate_hz=60.0), SettingsError, "must not exceed publish_rate_hz"),
    (dict(max_linear_speed=0.0), SettingsError, r"max_linear_speed: must be in \[0.001, 10.0\]"),
    (dict(instruction="x" * 20, max_instruction_chars=10), SettingsError, "instruction: longer"),
    (dict(backend="fixed", fixed_action=[1.0, float("nan")]), PolicyConfigError, "fixed_action"),
    (dict(backend="nonsense"), PolicyConfigError, "backend: must be one of"),
    (dict(max_image_age_s=-0.5), SettingsError, r"max_image_age_s: must be -1 \(two control periods\), 0"),
    (dict(max_image_age_s=-2.0), SettingsError, r"max_image_age_s: must be in \[-1.0, 60.0\]"),
])
def test_bad_settings_name_the_parameter(change, error, message):
    with pytest.raises(error, match=message):
        build_settings(dict(default_values(), **change))
