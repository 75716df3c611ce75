"""``magma-ros replay`` against magma_node running as a separate process (fixed backend), then
``magma-ros eval`` on the recorded output."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from domains import spare_domain

from magma_ros.actions import delta_to_twist, load_profile
from magma_ros.eval.sample_bag import ACTION_TOPIC, SampleSpec, ground_truth, write_sample_bag
from magma_ros.interface import DIAGNOSTICS, GRIPPER, IMAGE, INSTRUCTION, NODE_ACTION, TWIST

pytestmark = pytest.mark.ros

FIXED = [0.01, 0.0, -0.01, 0.0, 0.0, 0.05, 1.0]
FRAMES, RATE_HZ, SPEED = 30, 10.0, 2.0
# A domain of our own, so that nodes of other test modules cannot mix into the recordings.
DOMAIN = spare_domain(2)
ENV = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN)}


@pytest.fixture(scope="module")
def magma_node(console_script, tmp_path_factory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [console_script("magma_node"), "--ros-args", "-p", "robot:=bridge_orig", "-p", "backend:=fixed",
             "-p", f"fixed_action:={json.dumps(FIXED)}", "-p", "enabled_on_start:=true"],
            stdout=f, stderr=subprocess.STDOUT, env=ENV)
    yield log
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn in reader.connections:
            out.setdefault(conn.topic, [])
        for conn, t, raw in reader.messages():
            out[conn.topic].append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def test_replay_through_the_node_then_eval(magma_node, tmp_path, console_script):
    source = write_sample_bag(tmp_path / "teleop", SampleSpec(frames=FRAMES, episodes=2, rate_hz=RATE_HZ,
                                                              storage="sqlite3", twist=False))
    out = tmp_path / "replayed"
    result = subprocess.run(
        [console_script("magma-ros"), "replay", str(source), "--out", str(out), "--copy-topic", ACTION_TOPIC,
         "--rate", str(SPEED), "--loop", "2", "--wait-node", "60"],
        capture_output=True, text=True, timeout=180, env=ENV)
    assert result.returncode == 0, result.stderr + magma_node.read_text()
    assert "passes: 2" in result.stdout and "ETA" in result.stderr
    msgs = read_bag(out)
    profile = load_profile("bridge_orig")
    # inputs as published, and the copied ground truth (all of it: written directly, not sent over DDS)
    assert len(msgs[ACTION_TOPIC]) == 2 * FRAMES
    assert [m.data for _, m in msgs[INSTRUCTION.absolute]] == ["put the block in bowl 0", "put the block in bowl 1"] * 2
    images = msgs[IMAGE.absolute]
    assert len(images) >= 0.8 * 2 * FRAMES  # best effort on localhost
    # paced, not dumped at once: the receive stamps span at least most of the scaled recording time
    # (only a lower bound: a busy machine can only stretch it; the achieved rate is bench/ material)
    span_s = (images[-1][0] - images[0][0]) / 1e9
    assert span_s > 0.6 * 2 * (FRAMES - 1) / RATE_HZ / SPEED
    # what the node published: the fixed action, its twist (after the acceleration ramp), the gripper
    actions = msgs[NODE_ACTION.absolute]
    assert len(actions) >= 5
    for _, m in actions:
        np.testing.assert_allclose(m.data, FIXED)
    expected = delta_to_twist(FIXED, profile.control_period_s)
    twists = np.array([[m.twist.linear.x, m.twist.linear.y, m.twist.linear.z,
                        m.twist.angular.x, m.twist.angular.y, m.twist.angular.z] for _, m in msgs[TWIST.absolute]])
    full = np.concatenate([expected.linear, expected.angular])
    assert np.isclose(twists, full, atol=1e-9).all(axis=1).sum() >= 5
    assert np.all(np.abs(twists) <= np.abs(full) + 1e-9)
    assert {m.data for _, m in msgs[GRIPPER.absolute]} == {1.0}
    assert msgs[DIAGNOSTICS.absolute]

    # the node's decoded actions scored against the copied teleop actions
    report_dir = tmp_path / "eval"
    result = subprocess.run(
        [console_script("magma-ros"), "eval", str(out), "--action-topic", ACTION_TOPIC,
         "--predicted-action-topic", NODE_ACTION.absolute, "--out", str(report_dir), "--quiet"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads((report_dir / "report.json").read_text())
    evaluated = report["frames"]["evaluated"]
    assert evaluated >= 5 and evaluated + report["frames"]["skipped"]["no_prediction"] <= len(images)
    with (report_dir / "frames.csv").open() as f:
        rows = list(csv.DictReader(f))
    axes = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    pred = np.array([[float(r[f"pred_{a}"]) for a in axes] for r in rows])
    true = np.array([[float(r[f"true_{a}"]) for a in axes] for r in rows])
    np.testing.assert_allclose(pred, np.tile(FIXED, (len(rows), 1)))
    gt = np.stack([ground_truth(i, profile) for i in range(FRAMES)])
    assert all(np.isclose(gt, row).all(axis=1).any() for row in true)  # each truth is a recorded action
    assert report["overall"]["mse"]["x"] == pytest.approx(((pred[:, 0] - true[:, 0]) ** 2).mean(), rel=1e-9)
    assert len(report["episodes"]) == 4


def test_replay_without_a_node_fails_clearly(tmp_path, console_script):
    source = write_sample_bag(tmp_path / "teleop", SampleSpec(frames=5, episodes=1))
    result = subprocess.run(
        [console_script("magma-ros"), "replay", str(source), "--out", str(tmp_path / "o"),
         "--publish-image-topic", "/nobody/listens", "--wait-node", "2"],
        capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 2
    assert "no subscriber on /nobody/listens after 2 s: start magma_node first" in result.stderr
    assert not (tmp_path / "o").exists()


def test_replay_rejects_missing_topics(tmp_path, capsys):
    from magma_ros.cli import main

    source = write_sample_bag(tmp_path / "teleop", SampleSpec(frames=3, episodes=1))
    assert main(["replay", str(source), "--out", str(tmp_path / "o"), "--copy-topic", "/not/there"]) == 2
    assert "copied topic /not/there not found" in capsys.readouterr().err
    assert main(["replay", str(source), "--out", str(tmp_path / "o"), "--copy-topic", NODE_ACTION.absolute]) == 2
    assert "would be both replayed and recorded" in capsys.readouterr().err
