"""magma_sim over DDS, alone, in lockstep with a probe acting as its controller: topics, motion
measured over simulated seconds, rejected twists, resets. Nothing here depends on how fast the
machine is. (The closed loop with magma_node is in test_sim_demo.py.)"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from node_support import NodeProcess

from magma_ros.interface import (
    CLOCK,
    EE_POSE,
    IMAGE,
    INSTRUCTION,
    JOINT_STATES,
    NODE_ACTION,
    SENSOR_PUB_QOS,
    SIM_RESET,
    SIM_STATUS,
    TWIST,
)

DEADLINE_S = 60.0
PROBE_NAME = "sim_probe"
REPLY_TOPIC = f"/{PROBE_NAME}/reply"  # not magma_node's: the reply_topic parameter is followed
TICK_S = 5 / 240  # magma_sim's tick


class SimProbe:
    """A test node in its own context that acts as magma_sim's controller in lockstep: on every
    /clock it publishes the current command (if any) stamped with that time, and it answers every
    camera frame on the reply topic. Keeps the latest message of each simulator topic."""

    def __init__(self) -> None:
        import rclpy
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from rclpy.executors import SingleThreadedExecutor
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64MultiArray, Int64, String

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(PROBE_NAME, context=self.context)
        self.latest: dict[str, object] = {}
        self.command: tuple[list[float], str] | None = None  # (linear m/s, frame) sent on every tick
        for name, kind, topic in (("pose", PoseStamped, EE_POSE), ("joints", JointState, JOINT_STATES),
                                  ("status", String, SIM_STATUS)):
            self.node.create_subscription(kind, topic.absolute, lambda msg, n=name: self.latest.__setitem__(n, msg),
                                          topic.qos.profile())
        self.node.create_subscription(Clock, CLOCK.absolute, self._on_clock, CLOCK.qos.profile())
        self.node.create_subscription(Image, IMAGE.absolute, self._on_image, SENSOR_PUB_QOS.profile())
        self.twist_pub = self.node.create_publisher(TwistStamped, TWIST.absolute, TWIST.qos.profile())
        self.reply_pub = self.node.create_publisher(Float64MultiArray, REPLY_TOPIC, NODE_ACTION.qos.profile())
        self.reset_pub = self.node.create_publisher(Int64, SIM_RESET.absolute, SIM_RESET.qos.profile())
        self.instruction_pub = self.node.create_publisher(String, INSTRUCTION.absolute, INSTRUCTION.qos.profile())
        self.TwistStamped, self.Int64, self.String, self.Reply = TwistStamped, Int64, String, Float64MultiArray
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_clock(self, msg) -> None:
        if self.command is not None:
            twist = self.TwistStamped()
            twist.header.frame_id = self.command[1]
            twist.header.stamp = msg.clock
            twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = (float(v) for v in self.command[0])
            self.twist_pub.publish(twist)

    def _on_image(self, msg) -> None:
        self.latest["image"] = msg
        self.reply_pub.publish(self.Reply(data=[0.0] * 7))

    def status(self) -> dict:
        return json.loads(self.latest["status"].data)

    def spin_until(self, condition, timeout=DEADLINE_S, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if condition():
                return
        raise AssertionError(f"timed out waiting for {what} (last status: {self.latest.get('status')})")

    def run_for(self, sim_seconds: float) -> None:
        """Spin until the simulator's status time has advanced by ``sim_seconds``."""
        self.spin_until(lambda: "status" in self.latest, what="a status")
        end = self.status()["time"] + sim_seconds
        self.spin_until(lambda: self.status()["time"] >= end, what=f"{sim_seconds} simulated seconds")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.shutdown()


@pytest.fixture(scope="module")
def sim(console_script, tmp_path_factory):
    """magma_sim in lockstep with the probe; a silent probe is given up on after 2 s."""
    proc = NodeProcess(console_script("magma_sim"), "magma_sim", {
        "seed": 4, "instruction": "reach the blue cube", "lockstep": True, "lockstep_timeout_s": 2.0,
        "reply_topic": REPLY_TOPIC, "camera_rate_hz": 5.0}, tmp_path_factory.mktemp("sim"))
    probe = SimProbe()
    try:
        probe.spin_until(lambda: {"status", "image", "pose", "joints"} <= set(probe.latest),
                         what=f"magma_sim topics; log:\n{proc.output()}")
        yield probe
    finally:
        probe.close()
        code = proc.stop()
        assert code == 0, proc.output()


def reset(sim: SimProbe, seed: int, instruction: str) -> None:
    """A new episode: ``instruction`` and a reset to ``seed``, once the status reports both."""
    sim.spin_until(lambda: "status" in sim.latest, what="a status")
    episode = sim.status()["episode"]
    sim.instruction_pub.publish(sim.String(data=instruction))
    sim.reset_pub.publish(sim.Int64(data=seed))
    sim.spin_until(lambda: (lambda s: s["episode"] > episode and s["seed"] == seed and s["instruction"] == instruction)(
        sim.status()), DEADLINE_S, f"reset to seed {seed}")


def test_sim_publishes_camera_pose_joints_and_status(sim):
    reset(sim, 4, "reach the blue cube")  # the start-up episode anew (another test may have moved the arm)
    image, pose, joints = sim.latest["image"], sim.latest["pose"], sim.latest["joints"]
    assert (image.width, image.height, image.encoding, image.step) == (256, 256, "rgb8", 768)
    assert len(image.data) == 256 * 256 * 3
    assert pose.header.frame_id == "panda_link0"
    assert len(joints.name) == 9 and "panda_joint1" in joints.name and len(joints.position) == 9
    status = sim.status()
    assert status["seed"] == 4 and status["instruction"] == "reach the blue cube"
    assert status["distance"] > 0.05 and status["success"] is False and status["lockstep"] is True


def test_twist_in_base_frame_moves_the_arm_and_stops_after_timeout(sim):
    sim.command = ([0.0, 0.0, 0.0], "panda_link0")
    sim.run_for(0.5)  # engaged: every tick now waits for the probe
    start = np.array(sim.status()["ee_position"])
    sim.command = ([0.0, 0.08, 0.0], "panda_link0")
    sim.run_for(1.0)
    sim.command = None
    moved = np.array(sim.status()["ee_position"])
    # 1 simulated second at 8 cm/s, whatever the load (the controller tracks its target with some lag)
    assert 0.05 < moved[1] - start[1] < 0.09, (start, moved)
    assert abs(moved[0] - start[0]) < 0.02 and abs(moved[2] - start[2]) < 0.02
    # no more twists: the simulator gives up waiting, the held command times out, the arm comes to rest
    samples = []

    def at_rest() -> bool:
        samples.append((sim.status()["time"], np.array(sim.status()["ee_position"])))
        old = [p for t, p in samples if samples[-1][0] - t >= 1.0]
        return bool(old) and np.linalg.norm(samples[-1][1] - old[-1]) < 0.002

    sim.spin_until(at_rest, DEADLINE_S, "the arm to stop")
    assert samples[-1][1][1] - moved[1] < 0.06, ("it stopped soon after the last twist", sim.status())
    assert sim.status()["lockstep_timeouts"] >= 1


def test_twist_in_another_frame_is_rejected(sim):
    before = sim.status()["rejected_twists"]
    start = np.array(sim.status()["ee_position"])
    sim.command = ([0.0, 0.0, -0.1], "base_link")
    try:
        sim.run_for(1.0)
    finally:
        sim.command = None
    assert sim.status()["rejected_twists"] > before
    assert np.linalg.norm(np.array(sim.status()["ee_position"]) - start) < 0.01


def test_reset_with_seed_and_new_instruction(sim):
    reset(sim, 12, "reach the red cube")
    from magma_ros.sim.world import SimWorld

    world = SimWorld()
    world.reset(12)
    try:
        expected = np.linalg.norm(world.ee_position() - world.cube_position("red") - [0, 0, 0.03])
    finally:
        world.close()
    assert sim.status()["distance"] == pytest.approx(expected, abs=0.01)
    assert sim.status()["actions"] == 0
