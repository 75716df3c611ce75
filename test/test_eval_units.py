"""Units of the evaluator: message conversions, the twist inverse, flat memory."""
from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from magma_ros.actions import delta_to_twist, euler_xyz_to_rotvec, load_profile, rotvec_to_euler_xyz
from magma_ros.eval.convert import ConversionError, array_to_action, image_to_rgb, twist_to_delta
from magma_ros.eval.runner import EvalOptions, Evaluator
from magma_ros.eval.sample_bag import ACTION_TOPIC, IMAGE_TOPIC, INSTRUCTION_TOPIC, SampleSpec, write_sample_bag
from magma_ros.eval.stream import ActionSource
from magma_ros.policy import BackendConfig, create_policy

RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # 2 rows, 3 columns


def image_msg(encoding: str, pixels: np.ndarray, pad: int = 0) -> SimpleNamespace:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 255, np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=rows.shape[1], data=rows.reshape(-1).tobytes())


@pytest.mark.parametrize("encoding,pixels", [
    ("rgb8", RGB), ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.concatenate([RGB, np.full((2, 3, 1), 7, np.uint8)], axis=2)),
    ("bgra8", np.concatenate([RGB[:, :, ::-1], np.full((2, 3, 1), 7, np.uint8)], axis=2)),
])
def test_color_encodings_with_row_padding(encoding, pixels):
    for pad in (0, 5):
        np.testing.assert_array_equal(image_to_rgb(image_msg(encoding, pixels, pad), "sensor_msgs/msg/Image"), RGB)


def test_mono_and_errors():
    grey = RGB[:, :, 0]
    out = image_to_rgb(image_msg("mono8", grey[:, :, None]), "sensor_msgs/msg/Image")
    assert out.shape == (2, 3, 3) and np.all(out[:, :, 2] == grey)
    with pytest.raises(ConversionError, match="unsupported encoding '32FC1'"):
        image_to_rgb(image_msg("32FC1", RGB), "sensor_msgs/msg/Image")
    short = image_msg("rgb8", RGB)
    short.data = short.data[:-1]
    with pytest.raises(ConversionError, match="data length 17 does not match height x step = 2 x 9"):
        image_to_rgb(short, "sensor_msgs/msg/Image")


def test_compressed_images_decode_with_opencv():
    import cv2

    ok, png = cv2.imencode(".png", RGB[:, :, ::-1])
    assert ok
    msg = SimpleNamespace(format="png", data=png.tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg, "sensor_msgs/msg/CompressedImage"), RGB)
    with pytest.raises(ConversionError, match="cannot decode compressed image"):
        image_to_rgb(SimpleNamespace(format="jpeg", data=b"nope"), "sensor_msgs/msg/CompressedImage")


def test_action_arrays():
    np.testing.assert_array_equal(array_to_action(SimpleNamespace(data=np.arange(7.0))), np.arange(7.0))
    with pytest.raises(ConversionError, match="expected 7 values"):
        array_to_action(SimpleNamespace(data=[0.0] * 8))
    with pytest.raises(ConversionError, match="finite"):
        array_to_action(SimpleNamespace(data=[0.0] * 6 + [float("nan")]))


def test_twist_inverse_recovers_roll_pitch_yaw():
    rng = np.random.default_rng(3)
    rpy = np.column_stack([rng.uniform(-3.0, 3.0, 500), rng.uniform(-1.5, 1.5, 500), rng.uniform(-3.0, 3.0, 500)])
    for angles in rpy:
        np.testing.assert_allclose(rotvec_to_euler_xyz(euler_xyz_to_rotvec(angles)), angles, atol=1e-9)
    np.testing.assert_allclose(rotvec_to_euler_xyz(np.zeros(3)), np.zeros(3))


def test_twist_to_delta_inverts_delta_to_twist():
    dt = load_profile("google_robot").control_period_s
    delta = np.array([0.1, -0.05, 0.02, 0.3, -0.2, 0.4, 1.0])
    tw = delta_to_twist(delta, dt)
    v3 = lambda v: SimpleNamespace(x=v[0], y=v[1], z=v[2])  # noqa: E731 - a one-line helper local to the test
    msg = SimpleNamespace(twist=SimpleNamespace(linear=v3(tw.linear), angular=v3(tw.angular)))
    np.testing.assert_allclose(twist_to_delta(msg, dt), delta[:6], atol=1e-12)


def peak_bytes(bag: Path, out: Path) -> int:
    profile = load_profile("bridge_orig")
    policy = create_policy(BackendConfig(backend="fixed", fixed_action=(0.0,) * 7), profile)
    options = EvalOptions(bag=bag, out_dir=out, profile=profile, image_topic=IMAGE_TOPIC,
                          instruction_topic=INSTRUCTION_TOPIC, instruction=None, truth=ActionSource(ACTION_TOPIC),
                          plots=False, progress=False)
    tracemalloc.start()
    try:
        report = Evaluator(options, policy, "fixed").run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert report["frames"]["evaluated"] == int(bag.name.split("_")[1])


@pytest.mark.slow
def test_memory_stays_flat_on_long_bags(tmp_path):
    """10x the frames (150 KB each) must not take more than a small margin of extra memory."""
    peaks = {}
    for frames in (100, 1000):
        bag = write_sample_bag(tmp_path / f"bag_{frames}", SampleSpec(frames=frames, episodes=3, width=224,
                                                                       height=224, twist=False))
        if frames == 100:
            peak_bytes(bag, tmp_path / "warmup")  # imports and caches out of the measurement
        peaks[frames] = peak_bytes(bag, tmp_path / f"out_{frames}")
    frame_bytes = 224 * 224 * 3
    assert peaks[1000] - peaks[100] < 20 * frame_bytes, peaks  # holding the frames would take 900 more
