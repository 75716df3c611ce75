"""A profile written by ``magma-ros stats`` is usable as it is: by magma_node (a process, fixed
backend), by ``magma-ros eval`` and by ``magma-ros decode``."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from node_support import rgb_image, running_node, topics_under, twist_values
from test_stats_cli import random_actions, write_bag

from magma_ros.actions import ActionDecoder, load_profile
from magma_ros.cli import main
from magma_ros.eval.sample_bag import ACTION_TOPIC

RATE_HZ = 10.0
FIXED = (0.01, -0.005, 0.002, 0.0, 0.0, 0.05, 0.0)
TOPICS = topics_under("stats_arm")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stats_profile")
    bag = write_bag(root / "run", random_actions(50, 11), ["stack"] * 25 + ["sort"] * 25, rate_hz=RATE_HZ)
    out = root / "arm.yaml"
    assert main(["stats", str(bag), "--action-topic", ACTION_TOPIC, "--out", str(out), "--name", "stats_arm",
                 "--base-frame", "arm_base", "--quiet"]) == 0
    return bag, out


def test_the_node_runs_with_it(console_script, written, tmp_path):
    _, profile_path = written
    profile = load_profile(profile_path)
    assert profile.control_rate_hz == RATE_HZ
    assert profile.limits.max_linear_step > max(map(abs, FIXED[:3]))
    params = {"backend": "fixed", "fixed_action": FIXED, "robot": str(profile_path), "enabled_on_start": True,
              "instruction": "stack", "max_linear_accel": 100.0, "max_angular_accel": 100.0,
              **{f"{key}_topic": name for key, name in TOPICS.items()}}
    with running_node(console_script, "stats_node", params, tmp_path, TOPICS) as (_, probe):
        with probe.stream(rgb_image()):
            probe.wait_state("active")
            msg = probe.wait_steady_motion(since=time.monotonic())
    assert msg.header.frame_id == "arm_base"  # the profile's base frame
    assert np.allclose(twist_values(msg)[:3], np.array(FIXED[:3]) * RATE_HZ)  # delta / (1 / control_rate_hz)
    assert np.allclose(twist_values(msg)[3:], [0.0, 0.0, FIXED[5] * RATE_HZ])
    assert probe.grippers.last().data == 0.0  # binary gripper proposed: 0.0 is below the threshold


def test_eval_runs_with_it(written, tmp_path):
    bag, profile_path = written
    out = tmp_path / "eval"
    assert main(["eval", str(bag), "--robot", str(profile_path), "--action-topic", ACTION_TOPIC, "--backend",
                 "fixed", "--fixed-action", ",".join(map(str, FIXED)), "--out", str(out), "--quiet",
                 "--no-plots"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["robot"] == "stats_arm"
    assert report["frames"]["evaluated"] == 50
    assert report["settings"]["control_period_s"] == pytest.approx(1 / RATE_HZ)


def test_decode_runs_with_it(console_script, written):
    _, profile_path = written
    ids = [127843, 127876, 127917, 127872, 127852, 127874, 127872]
    expected = ActionDecoder(load_profile(profile_path).stats).decode_ids(np.array(ids)).tolist()
    exe = console_script("magma-ros")
    for source in ("--robot", "--stats"):  # as a profile, and as a stats file (its normalization section)
        result = subprocess.run([exe, "decode", source, str(profile_path), "--ids", ",".join(map(str, ids))],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert list(json.loads(result.stdout).values()) == expected
