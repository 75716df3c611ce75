"""The simulator over DDS: magma_sim's topics alone, then the closed loop with magma_node
(separate processes) reaching targets from seeded scenes."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

DEADLINE_S = 60.0


class SimProbe:
    """A test node: publishes commands to magma_sim and keeps what it publishes."""

    def __init__(self) -> None:
        import rclpy
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64, Int64, String

        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node("sim_probe")
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.latest: dict[str, object] = {}
        for name, kind, topic, qos in (("image", Image, "/camera/image_raw", qos_profile_sensor_data),
                                       ("pose", PoseStamped, "/sim/ee_pose", 10),
                                       ("joints", JointState, "/joint_states", 10),
                                       ("status", String, "/sim/status", latched)):
            self.node.create_subscription(kind, topic, lambda msg, n=name: self.latest.__setitem__(n, msg), qos)
        self.twist_pub = self.node.create_publisher(TwistStamped, "/servo_node/delta_twist_cmds", 10)
        self.gripper_pub = self.node.create_publisher(Float64, "/magma/gripper_command", 10)
        self.reset_pub = self.node.create_publisher(Int64, "/sim/reset", latched)
        self.instruction_pub = self.node.create_publisher(String, "/magma/instruction", latched)
        self.TwistStamped, self.Int64, self.String = TwistStamped, Int64, String

    def status(self) -> dict:
        return json.loads(self.latest["status"].data)

    def spin_until(self, condition, timeout=DEADLINE_S, what="condition", during=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
            if during:
                during()
            if condition():
                return
        raise AssertionError(f"timed out waiting for {what}")

    def twist(self, linear, frame="panda_link0") -> None:
        msg = self.TwistStamped()
        msg.header.frame_id = frame
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in linear)
        self.twist_pub.publish(msg)

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.shutdown()


@pytest.fixture(scope="module")
def sim(console_script, tmp_path_factory):
    log = tmp_path_factory.mktemp("sim") / "magma_sim.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([console_script("magma_sim"), "--ros-args", "-p", "seed:=4",
                                 "-p", "instruction:=reach the blue cube"], stdout=out, stderr=subprocess.STDOUT)
    probe = SimProbe()
    try:
        probe.spin_until(lambda: {"status", "image", "pose", "joints"} <= set(probe.latest),
                         what=f"magma_sim topics; log:\n{log.read_text() if log.exists() else ''}")
        yield probe
    finally:
        probe.close()
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(20) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_sim_publishes_camera_pose_joints_and_status(sim):
    image, pose, joints = sim.latest["image"], sim.latest["pose"], sim.latest["joints"]
    assert (image.width, image.height, image.encoding, image.step) == (256, 256, "rgb8", 768)
    assert len(image.data) == 256 * 256 * 3
    assert pose.header.frame_id == "panda_link0"
    assert len(joints.name) == 9 and "panda_joint1" in joints.name and len(joints.position) == 9
    status = sim.status()
    assert status["seed"] == 4 and status["instruction"] == "reach the blue cube"
    assert status["distance"] > 0.05 and status["success"] is False


def test_twist_in_base_frame_moves_the_arm_and_stops_after_timeout(sim):
    start = np.array(sim.status()["ee_position"])
    t0 = time.monotonic()
    sim.spin_until(lambda: time.monotonic() - t0 > 1.0, during=lambda: sim.twist([0.0, 0.08, 0.0]))
    sim.spin_until(lambda: np.array(sim.status()["ee_position"])[1] - start[1] > 0.04, 10, "motion along +y")
    moved = np.array(sim.status()["ee_position"])
    assert abs(moved[0] - start[0]) < 0.02 and abs(moved[2] - start[2]) < 0.02
    # no more twists: the held command times out and the arm comes to rest
    samples = []

    def at_rest() -> bool:
        samples.append((sim.status()["time"], np.array(sim.status()["ee_position"])))
        old = [p for t, p in samples if samples[-1][0] - t >= 1.0]
        return bool(old) and np.linalg.norm(samples[-1][1] - old[-1]) < 0.002

    sim.spin_until(at_rest, 20, "the arm to stop")
    assert samples[-1][1][1] - moved[1] < 0.08, ("it stopped soon after the last twist", sim.status())


def test_twist_in_another_frame_is_rejected(sim):
    before = sim.status()["rejected_twists"]
    start = np.array(sim.status()["ee_position"])
    t0 = time.monotonic()
    sim.spin_until(lambda: time.monotonic() - t0 > 1.0, during=lambda: sim.twist([0.0, 0.0, -0.1], frame="base_link"))
    sim.spin_until(lambda: sim.status()["rejected_twists"] > before, 10, "rejection count")
    assert np.linalg.norm(np.array(sim.status()["ee_position"]) - start) < 0.01


def test_reset_with_seed_and_new_instruction(sim):
    sim.instruction_pub.publish(sim.String(data="reach the red cube"))
    sim.reset_pub.publish(sim.Int64(data=12))
    sim.spin_until(lambda: sim.status()["seed"] == 12 and sim.status()["instruction"] == "reach the red cube",
                   30, "reset to seed 12")
    from magma_ros.sim.world import SimWorld

    world = SimWorld()
    world.reset(12)
    try:
        expected = np.linalg.norm(world.ee_position() - world.cube_position("red") - [0, 0, 0.03])
    finally:
        world.close()
    assert sim.status()["distance"] == pytest.approx(expected, abs=0.01)


def test_real_time_factor_runs_the_simulation_faster(console_script, tmp_path):
    """A second simulator on its own domain at 4x: simulated time outruns the wall clock."""
    import os
    import random

    domain = str((int(os.environ["ROS_DOMAIN_ID"]) + random.randint(1, 50)) % 101 + 1)
    code = ("import json, time, rclpy\n"
            "from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy\n"
            "from std_msgs.msg import String\n"
            "rclpy.init(); n = rclpy.create_node('rtf_probe'); seen = []\n"
            "q = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)\n"
            "n.create_subscription(String, '/sim/status', lambda m: seen.append((time.monotonic(), json.loads(m.data)['time'])), q)\n"
            "end = time.monotonic() + 60\n"
            "while time.monotonic() < end and (not seen or seen[-1][0] - seen[0][0] < 3.0):\n"
            "    rclpy.spin_once(n, timeout_sec=0.05)\n"
            "print((seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0]))\n")
    env = {**os.environ, "ROS_DOMAIN_ID": domain}
    log = open(tmp_path / "sim.log", "w")
    proc = subprocess.Popen([console_script("magma_sim"), "--ros-args", "-p", "real_time_factor:=4.0",
                             "-p", "camera_rate_hz:=2.0"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        log.close()
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 2.0, (out.stdout, (tmp_path / "sim.log").read_text())


def test_closed_loop_with_magma_node_reaches_targets(tmp_path):
    """make demo's runner: magma_sim + magma_node (demo backend) as processes over DDS, 3 seeds."""
    out = subprocess.run([sys.executable, "-m", "magma_ros.demo", "--seed", "900", "--episodes", "3",
                          "--instruction", "reach the green cube", "--timeout", "30", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=240)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["successes"] >= 2, out.stdout + out.stderr
    assert out.returncode == (0 if summary["successes"] == 3 else 1)
    assert "step" in out.stdout and "distance" in out.stdout and "safety active" in out.stdout
    for episode in summary["episodes"]:
        assert "active" in episode["safety_states"]
        if episode["success"]:
            assert 0 < episode["steps"] <= 40
            assert (tmp_path / f"frames_seed{episode['seed']}.png").stat().st_size > 10_000
            assert (tmp_path / f"commands_seed{episode['seed']}.png").stat().st_size > 10_000


@pytest.mark.parametrize("env, args, message", [
    ({"MAGMA_MODEL": "/models/Magma-8B", "MAGMA_DEVICE": "cuda"}, [], "no CUDA GPU"),
    ({}, ["--instruction", "make coffee"], "expected"),
])
def test_demo_refuses_what_it_cannot_run(tmp_path, env, args, message):
    """No silent fallback: a configured Magma without a GPU is an error, not the demo policy."""
    import os

    torch = pytest.importorskip("torch")
    if env and torch.cuda.is_available():
        pytest.skip("a GPU is present: MAGMA_MODEL would be used")
    out = subprocess.run([sys.executable, "-m", "magma_ros.demo", "--out", str(tmp_path), *args],
                         capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "summary.json").exists()
