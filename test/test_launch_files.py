"""The three launch files under upstream launch/launch_ros, on a colcon install: each starts what it
says, its arguments and params file reach the nodes, the nodes publish on the documented (namespaced)
topics, and Ctrl-C to the launch ends everything cleanly with a final zero twist.

servo_node is a test double (servo_node_double.py, registered as package moveit_servo in a temporary
ament prefix) that records the parameters it receives; the MoveIt config package is a small fake."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

REASON = ("upstream launch and launch_ros are not installed (CI installs ../shared/wheels; on a ROS 2 machine "
          "source it): launch tests skipped")
pytest.importorskip("launch", reason=REASON)
pytest.importorskip("launch_ros", reason=REASON)

from colcon_support import build, new_workspace  # noqa: E402 - after the importorskip checks
from waiting import wait_until  # noqa: E402 - after the importorskip checks

from magma_ros.interface import GRIPPER, IMAGE, RELIABLE_QOS, SIM_STATUS, TWIST, Topic  # noqa: E402 - after the importorskip checks

TEST_DIR = Path(__file__).resolve().parent
FIXED_ACTION = [0.01, -0.02, 0.0, 0.0, 0.0, 0.1, 1.0]  # robot units per step; bridge_orig and wx250s run at 5 Hz
URDF = '<?xml version="1.0"?>\n<robot name="test_arm"><link name="test_arm/base_link"/></robot>\n'
SRDF = ('<?xml version="1.0"?>\n'
        '<robot name="test_arm"><group name="test_group"><link name="test_arm/base_link"/></group></robot>\n')


# --- an installed workspace, a fake moveit_servo and a fake MoveIt config package -----------------
def register(prefix: Path, package: str) -> None:
    index = prefix / "share/ament_index/resource_index/packages"
    index.mkdir(parents=True, exist_ok=True)
    (index / package).write_text("")


def fake_moveit(prefix: Path) -> None:
    register(prefix, "moveit_servo")
    servo = prefix / "lib/moveit_servo/servo_node"
    servo.parent.mkdir(parents=True)
    servo.write_text(f"#!/bin/sh\nexec {sys.executable} {TEST_DIR / 'servo_node_double.py'} \"$@\"\n")
    servo.chmod(0o755)
    register(prefix, "test_arm_moveit_config")
    config = prefix / "share/test_arm_moveit_config/config"
    config.mkdir(parents=True)
    (config / "test_arm.urdf").write_text(URDF)
    (config / "test_arm.srdf").write_text(SRDF)
    # kinematics as a ROS parameter file (as Interbotix ships it), joint limits as plain MoveIt YAML
    (config / "kinematics.yaml").write_text(
        "/**:\n  ros__parameters:\n    robot_description_kinematics:\n      test_group:\n"
        "        kinematics_solver: kdl_kinematics_plugin/KDLKinematicsPlugin\n"
        "        kinematics_solver_timeout: 0.005\n")
    (config / "joint_limits.yaml").write_text(
        "joint_limits:\n  joint1:\n    has_velocity_limits: true\n    max_velocity: 3.14\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """os.environ pointing at the colcon install and the fakes (for this module's launches and probes)."""
    ws = new_workspace(tmp_path_factory.mktemp("launch_ws"))
    build(ws)
    install = ws / "install" / "magma_ros"
    fakes = tmp_path_factory.mktemp("fake_prefix")
    fake_moveit(fakes)
    site = next(install.glob("lib/python3*/site-packages"))
    patch = pytest.MonkeyPatch()
    patch.setenv("AMENT_PREFIX_PATH",
                 os.pathsep.join([str(install), str(fakes), os.environ.get("AMENT_PREFIX_PATH", "")]))
    patch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    yield {"install": install, "share": install / "share/magma_ros", "fakes": fakes}
    patch.undo()


# --- running a launch file as ros2 launch does, and stopping it with Ctrl-C -----------------------
class Launch:
    def __init__(self, file: Path, arguments: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")
        # launch's wait between SIGINT and SIGTERM (default 5 s), generous for a loaded machine
        args = [f"{k}:={v}" for k, v in {"sigterm_timeout": "30", **arguments}.items()]
        self.proc = subprocess.Popen([sys.executable, str(TEST_DIR / "launch_runner.py"), str(file), *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text()

    def ctrl_c(self, timeout: float = 120.0) -> int:
        """Ctrl-C in the terminal: SIGINT to the launch's process group (launch and its nodes; launch
        then does not send its own SIGINT, and escalates to SIGTERM after sigterm_timeout)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


def unhandled_tracebacks(output: str) -> list[str]:
    """Traceback lines not reported by Python as 'Exception ignored in' (a KeyboardInterrupt that lands
    inside rclpy's Task constructor at Ctrl-C leaves one of those from Task.__del__; harmless)."""
    lines = output.splitlines()
    return [line for i, line in enumerate(lines) if "Traceback" in line
            and not (i > 0 and "Exception ignored in" in lines[i - 1])]


def twist_zero(msg) -> bool:
    t = msg.twist
    return not any((t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z))


class Probe:
    """The test's side of one arm's topics: records twists, gripper commands and other outputs, and can
    stream camera images."""

    def __init__(self, outputs: dict[str, tuple[type, object]]) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("launch_probe", context=self.context)
        self.received: dict[str, list] = {topic: [] for topic in outputs}
        self._lock = threading.Lock()
        for topic, (msg_type, qos) in outputs.items():
            self.node.create_subscription(msg_type, topic, lambda m, t=topic: self._on(t, m), qos)
        self._image_type, self._image_qos = Image, IMAGE.qos.profile()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self.executor.spin, daemon=True)]
        self._threads[0].start()

    def _on(self, topic: str, msg) -> None:
        with self._lock:
            self.received[topic].append(msg)

    def messages(self, topic: str) -> list:
        with self._lock:
            return list(self.received[topic])

    def stream_images(self, topic: str, rate_hz: float = 10.0) -> None:
        pub = self.node.create_publisher(self._image_type, topic, self._image_qos)
        msg = self._image_type(height=48, width=64, encoding="rgb8", step=64 * 3,
                               data=(np.arange(64 * 48 * 3) % 251).astype(np.uint8).tobytes())

        def run() -> None:
            while not self._stop.wait(1.0 / rate_hz):
                msg.header.stamp = self.node.get_clock().now().to_msg()
                pub.publish(msg)

        self._threads.append(threading.Thread(target=run, daemon=True))
        self._threads[-1].start()

    def close(self) -> None:
        self._stop.set()
        self.executor.shutdown()
        for thread in self._threads:
            thread.join(10)
        self.node.destroy_node()
        self.context.shutdown()


def command_topics(namespace: str) -> dict[str, tuple[type, object]]:
    from geometry_msgs.msg import TwistStamped
    from std_msgs.msg import Float64

    return {in_namespace(namespace, TWIST): (TwistStamped, TWIST.qos.profile()),
            in_namespace(namespace, GRIPPER): (Float64, GRIPPER.qos.profile())}


def in_namespace(namespace: str, topic: Topic) -> str:
    """The absolute name of an interface topic for nodes started in ``namespace``."""
    return f"/{namespace}/{topic.name}"


def assert_moves_then_stops_cleanly(launch: Launch, probe: Probe, namespace: str, processes: list[str],
                                    linear_xy: tuple[float, float] | None = None) -> None:
    """A non-zero twist on the namespaced topic (with ``linear_xy``, one at that speed once the
    acceleration limit is through); then Ctrl-C: launch exits 0, every process finishes cleanly, and
    the last twist is zero."""
    twists = in_namespace(namespace, TWIST)

    def moving(msg) -> bool:
        if linear_xy is None:
            return not twist_zero(msg)
        return (msg.twist.linear.x, msg.twist.linear.y) == pytest.approx(linear_xy, abs=1e-6)

    wait_until(lambda: next((m for m in probe.messages(twists) if moving(m)), None), 120,
               what=f"a twist moving {linear_xy or 'at all'} on {twists}; launch output:\n{launch.output()}")
    code = launch.ctrl_c()
    output = launch.output()
    assert code == 0, output
    for process in processes:
        assert f"[{process}-" in output and "process has finished cleanly" in output, (process, output)
    assert output.count("process has finished cleanly") == len(processes), output
    assert "escalating to 'SIGTERM'" not in output, output
    assert not unhandled_tracebacks(output), output
    wait_until(lambda: twist_zero(probe.messages(twists)[-1]), 30, what="a final zero twist")


# --- magma_node.launch.py -------------------------------------------------------------------------
def test_magma_node_launch_arguments_and_params_file_reach_the_node(env, tmp_path):
    params = tmp_path / "arm1_magma_node.yaml"
    params.write_text("/**:\n  ros__parameters:\n    enabled_on_start: true\n    instruction: pick up the cup\n"
                      "    frame_id: arm1/base_link\n")
    launch = Launch(env["share"] / "launch/magma_node.launch.py",
                    {"namespace": "arm1", "params_file": str(params), "backend": "fixed",
                     "fixed_action": "[" + ",".join(map(str, FIXED_ACTION)) + "]"}, tmp_path / "launch.log")
    probe = Probe(command_topics("arm1"))
    try:
        probe.stream_images(in_namespace("arm1", IMAGE))

        # fixed_action (an argument) at the profile's 5 Hz; frame_id from the params file
        assert_moves_then_stops_cleanly(launch, probe, "arm1", ["magma_node"], linear_xy=(0.05, -0.1))
        assert {m.header.frame_id for m in probe.messages(in_namespace("arm1", TWIST))} == {"arm1/base_link"}
        assert probe.messages(in_namespace("arm1", GRIPPER))[-1].data == 1.0
    finally:
        probe.close()
        launch.kill()


def test_magma_node_launch_managed_autostart_configures_and_activates(env, tmp_path):
    """managed:=true autostart:=true: launch_ros lifecycle events configure, then activate the node
    (no ~/enable call, enabled_on_start false): it moves; Ctrl-C ends it with exit 0 and a final zero."""
    params = tmp_path / "managed.yaml"
    params.write_text("/**:\n  ros__parameters:\n    instruction: pick up the cup\n")
    launch = Launch(env["share"] / "launch/magma_node.launch.py",
                    {"namespace": "arm3", "params_file": str(params), "managed": "true", "autostart": "true",
                     "backend": "fixed", "fixed_action": "[" + ",".join(map(str, FIXED_ACTION)) + "]"},
                    tmp_path / "launch.log")
    probe = Probe(command_topics("arm3"))
    try:
        probe.stream_images(in_namespace("arm3", IMAGE))
        assert_moves_then_stops_cleanly(launch, probe, "arm3", ["magma_node"], linear_xy=(0.05, -0.1))
        output = launch.output()
        assert output.index("configured: inactive") < output.index("activated"), output
    finally:
        probe.close()
        launch.kill()


def test_magma_node_launch_refuses_autostart_without_managed(env, tmp_path):
    launch = Launch(env["share"] / "launch/magma_node.launch.py", {"autostart": "true"}, tmp_path / "launch.log")
    try:
        code = launch.proc.wait(120)
    finally:
        launch.kill()
    output = launch.output()
    assert code != 0 and "autostart: needs managed:=true" in output, output
    assert "process started" not in output, output


# --- sim_demo.launch.py ---------------------------------------------------------------------------
def test_sim_demo_launch_runs_the_closed_loop_in_a_namespace(env, tmp_path):
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    launch = Launch(env["share"] / "launch/sim_demo.launch.py",
                    {"namespace": "sim1", "instruction": "reach the blue cube", "seed": "4"}, tmp_path / "launch.log")
    image, status = in_namespace("sim1", IMAGE), in_namespace("sim1", SIM_STATUS)
    probe = Probe({**command_topics("sim1"), image: (Image, IMAGE.qos.profile()),
                   status: (String, SIM_STATUS.qos.profile())})
    try:
        wait_until(lambda: probe.messages(image), 120, what="a camera image from magma_sim")
        received = wait_until(lambda: probe.messages(status), 60, what="a status from magma_sim")
        assert json.loads(received[-1].data)["seed"] == 4
        assert_moves_then_stops_cleanly(launch, probe, "sim1", ["magma_sim", "magma_node"])
    finally:
        probe.close()
        launch.kill()


# --- servo_robot.launch.py ------------------------------------------------------------------------
def servo_arguments(env, params: Path, **extra: str) -> dict[str, str]:
    return {"moveit_config_package": "test_arm_moveit_config", "robot_name": "test_arm",
            "robot_description_file": "config/test_arm.urdf",
            "servo_params": str(env["share"] / "config/servo/wx250s.yaml"),
            "planning_group": "test_group", "params_file": str(params), **extra}


def test_servo_robot_launch_gives_servo_its_moveit_parameters(env, tmp_path, monkeypatch):
    from std_msgs.msg import Float64MultiArray

    report = tmp_path / "servo_report.json"
    monkeypatch.setenv("SERVO_DOUBLE_REPORT", str(report))
    params = tmp_path / "arm2.yaml"
    params.write_text("/**:\n  ros__parameters:\n    instruction: wave\n")
    launch = Launch(env["share"] / "launch/servo_robot.launch.py",
                    servo_arguments(env, params, namespace="arm2", robot="wx250s", backend="fixed",
                                    fixed_action=",".join(map(str, FIXED_ACTION)), enabled_on_start="true",
                                    gripper_bridge="true", gripper_bridge_mode="forward_position"),
                    tmp_path / "launch.log")
    probe = Probe({**command_topics("arm2"),
                   "/arm2/gripper_controller/commands": (Float64MultiArray, RELIABLE_QOS.profile())})
    try:
        probe.stream_images(in_namespace("arm2", IMAGE))
        started = json.loads(wait_until(lambda: report.exists() and report.read_text(), 120,
                                        what=f"the servo double's report; launch output:\n{launch.output()}"))
        p = started["parameters"]
        assert started["name"] == "/arm2/servo_node" and started["twist_topic"] == in_namespace("arm2", TWIST)
        assert p["robot_description"] == URDF and p["robot_description_semantic"] == SRDF
        assert (p["robot_description_kinematics.test_group.kinematics_solver"]
                == "kdl_kinematics_plugin/KDLKinematicsPlugin")
        assert p["robot_description_planning.joint_limits.joint1.max_velocity"] == 3.14
        assert p["moveit_servo.command_in_type"] == "speed_units"
        assert p["moveit_servo.planning_frame"] == "wx250s/base_link"
        assert p["moveit_servo.joint_limit_margins"] == [0.1] * 6
        assert p["planning_group_name"] == "test_group" and p["use_sim_time"] is False

        bridge = wait_until(lambda: probe.messages("/arm2/gripper_controller/commands"), 120,
                            what="the gripper bridge's command")
        assert list(bridge[-1].data) == [1.5]  # open (fixed gripper 1.0) -> open_position
        # Servo's own ~/delta_twist_cmds gets magma_node's commands
        wait_until(lambda: json.loads(report.read_text())["twists"] > 0, 120, what="a twist at the servo double")
        assert_moves_then_stops_cleanly(launch, probe, "arm2",
                                        ["servo_node", "magma_node", "interbotix_gripper_bridge"],
                                        linear_xy=(0.05, -0.1))
        # robot profile wx250s (an argument): its Interbotix base frame
        assert {m.header.frame_id for m in probe.messages(in_namespace("arm2", TWIST))} == {"wx250s/base_link"}
    finally:
        probe.close()
        launch.kill()


@pytest.mark.parametrize("change, message", [
    ({"servo_params": "unitless"}, "servo_params: .* must be speed_units"),
    ({"kinematics_file": "config/missing.yaml"}, "kinematics_file: .*missing.yaml does not exist"),
    ({"fixed_action": "[1, 2]"}, "fixed_action: expected 7 finite numbers"),
    ({"robot_name": "", "robot_description_file": ""}, "robot_name: needed for the default robot_description_file"),
])
def test_servo_robot_launch_rejects_bad_arguments_before_starting_anything(env, tmp_path, change, message):
    import re

    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    instruction: wave\n")
    if change.get("servo_params") == "unitless":
        servo = tmp_path / "servo.yaml"
        servo.write_text((env["share"] / "config/servo/wx250s.yaml").read_text().replace('"speed_units"', '"unitless"'))
        change = {"servo_params": str(servo)}
    launch = Launch(env["share"] / "launch/servo_robot.launch.py", {**servo_arguments(env, params), **change},
                    tmp_path / "launch.log")
    try:
        code = launch.proc.wait(120)
    finally:
        launch.kill()
    output = launch.output()
    assert code != 0 and re.search(message, output), output
    assert "process started" not in output, output
