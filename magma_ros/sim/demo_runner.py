"""The closed loop over ROS 2: ``magma_sim`` and ``magma_node`` as processes, watched from here.

Starts both nodes, sends the instruction, follows the episode on ``/sim/status``, ``/diagnostics``
and the node's commands, and records camera frames and commands for the report. Used by
``python -m magma_ros.demo`` (``make demo``) and by the end-to-end tests.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .report import CommandSample, Frame

FRAME_PERIOD_S = 0.2  # keep one camera frame per control period for the report


@dataclass
class EpisodeLog:
    """What one ROS episode did."""

    seed: int
    instruction: str
    success: bool = False
    steps: int = 0  # actions magma_node decoded (its ~/action topic)
    duration_s: float = 0.0
    final_distance: float | None = None
    safety_states: list[str] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    commands: list[CommandSample] = field(default_factory=list)
    gripper: list[tuple[float, float]] = field(default_factory=list)
    distance: list[tuple[float, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready outcome."""
        return {"seed": self.seed, "instruction": self.instruction, "success": self.success, "steps": self.steps,
                "duration_s": round(self.duration_s, 2), "final_distance_m": self.final_distance,
                "safety_states": self.safety_states}


@dataclass
class NodeProcesses:
    """The two node processes and their log files."""

    sim: subprocess.Popen
    node: subprocess.Popen
    logs: list[Any]

    def check_alive(self) -> None:
        """Raise ``RuntimeError`` naming a process that has exited."""
        for name, proc in (("magma_sim", self.sim), ("magma_node", self.node)):
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with status {code} (see its log in the output directory)")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT both (magma_node publishes a final zero twist), then kill what does not exit."""
        for proc in (self.node, self.sim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in (self.node, self.sim):
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


def start_nodes(out_dir: Path, *, seed: int, node_params: dict[str, Any]) -> NodeProcesses:
    """Start ``magma_sim`` and ``magma_node`` with this interpreter; logs go to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sim_log = open(out_dir / "magma_sim.log", "w", encoding="utf-8")
    node_log = open(out_dir / "magma_node.log", "w", encoding="utf-8")
    sim = subprocess.Popen([sys.executable, "-m", "magma_ros.sim.sim_main", "--ros-args", "-p", f"seed:={seed}"],
                           stdout=sim_log, stderr=subprocess.STDOUT, env=env)
    args = [sys.executable, "-m", "magma_ros.ros.node_main", "--ros-args"]
    for name, value in node_params.items():
        args += ["-p", f"{name}:={_param_text(value)}"]
    node = subprocess.Popen(args, stdout=node_log, stderr=subprocess.STDOUT, env=env)
    return NodeProcesses(sim=sim, node=node, logs=[sim_log, node_log])


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Monitor:
    """An rclpy node that sends instructions and resets and records what the loop does."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import TwistStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float64, Float64MultiArray, Int64, String

        self._rclpy = rclpy
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self.node = rclpy.create_node("magma_demo_monitor")
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._String, self._Int64 = String, Int64
        self.instruction_pub = self.node.create_publisher(String, "/magma/instruction", latched)
        self.reset_pub = self.node.create_publisher(Int64, "/sim/reset", latched)
        self.node.create_subscription(String, "/sim/status", self._on_status, latched)
        self.node.create_subscription(Image, "/camera/image_raw", self._on_image, qos_profile_sensor_data)
        self.node.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", self._on_twist, 10)
        self.node.create_subscription(Float64, "/magma/gripper_command", self._on_gripper, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(Float64MultiArray, "/magma_node/action", self._on_action, 10)
        self.status: dict[str, Any] | None = None
        self.safety: dict[str, str] = {}
        self.twist = (np.zeros(3), np.zeros(3))
        self.episode: EpisodeLog | None = None
        self._t0 = 0.0
        self._last_frame = -np.inf

    # ---- callbacks ----
    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _on_status(self, msg) -> None:
        self.status = json.loads(msg.data)
        ep = self.episode
        if ep is not None and self.status.get("seed") == ep.seed and self.status.get("distance") is not None:
            ep.distance.append((self._now(), float(self.status["distance"])))

    def _on_image(self, msg) -> None:
        ep = self.episode
        if ep is None or self._now() - self._last_frame < FRAME_PERIOD_S or self.status is None:
            return
        if self.status.get("seed") != ep.seed:
            return
        self._last_frame = self._now()
        image = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3).copy()
        ee = self.status.get("ee_position")
        ep.frames.append(Frame(time=self._now(), image=image, ee_position=None if ee is None else np.array(ee),
                               linear=self.twist[0].copy(), distance=self.status.get("distance")))

    def _on_twist(self, msg) -> None:
        lin, ang = msg.twist.linear, msg.twist.angular
        self.twist = (np.array([lin.x, lin.y, lin.z]), np.array([ang.x, ang.y, ang.z]))
        if self.episode is not None:
            self.episode.commands.append(CommandSample(self._now(), *self.twist))

    def _on_gripper(self, msg) -> None:
        if self.episode is not None:
            self.episode.gripper.append((self._now(), float(msg.data)))

    def _on_action(self, msg) -> None:
        if self.episode is not None:
            self.episode.steps += 1

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "state" in values and "actions_executed" in values:
                self.safety = values

    # ---- driving ----
    def spin_until(self, condition: Callable[[], bool], timeout: float, check: Callable[[], None] = lambda: None,
                   every: Callable[[], None] | None = None, period: float = 0.5) -> bool:
        """Spin until ``condition()`` or ``timeout`` s; ``every()`` runs each ``period`` s."""
        deadline = time.monotonic() + timeout
        next_report = time.monotonic()
        while time.monotonic() < deadline:
            self._rclpy.spin_once(self.node, timeout_sec=0.05)
            check()
            if condition():
                return True
            if every is not None and time.monotonic() >= next_report:
                next_report = time.monotonic() + period
                every()
        return condition()

    def run_episode(self, seed: int, instruction: str, timeout: float, check: Callable[[], None],
                    progress: Callable[[str], None]) -> EpisodeLog:
        """Reset the sim with ``seed``, send ``instruction``, follow until success or ``timeout``."""
        self.reset_pub.publish(self._Int64(data=seed))
        fresh = lambda: bool(self.status and self.status.get("seed") == seed and self.status["time"] < 0.5)  # noqa: E731
        if not self.spin_until(fresh, 30.0, check):
            raise RuntimeError(f"magma_sim did not confirm the reset to seed {seed} within 30 s")
        ep = EpisodeLog(seed=seed, instruction=instruction)
        self._t0 = time.monotonic()
        self._last_frame = -np.inf
        self.episode = ep
        self.instruction_pub.publish(self._String(data=instruction))

        def report() -> None:
            state = self.safety.get("state", "?")
            if not ep.safety_states or ep.safety_states[-1] != state:
                ep.safety_states.append(state)
            dist = self.status.get("distance") if self.status else None
            lin = self.twist[0]
            progress(f"t={self._now():5.1f}s  step {ep.steps:3d}  distance "
                     f"{'   ?  ' if dist is None else f'{100 * dist:5.1f} cm'}  safety {state:<14} "
                     f"twist [{lin[0]:+.3f} {lin[1]:+.3f} {lin[2]:+.3f}] m/s")

        def reached() -> bool:
            s = self.status
            return bool(s and s.get("seed") == seed and s.get("instruction") == instruction and s.get("success"))

        ep.success = self.spin_until(reached, timeout, check, every=report)
        report()
        self.episode = None
        ep.duration_s = self._now()
        if self.status and self.status.get("seed") == seed:
            ep.final_distance = self.status.get("distance")
        return ep

    def close(self) -> None:
        """Destroy the node (and the context, if this monitor made it)."""
        self.node.destroy_node()
        if self._owns_context and self._rclpy.ok():
            self._rclpy.shutdown()


def wait_until_ready(monitor: Monitor, procs: NodeProcesses, timeout: float) -> None:
    """Wait for the simulator's status and the node's diagnostics (it has seen images)."""
    ready = monitor.spin_until(lambda: monitor.status is not None and monitor.safety.get("state") not in
                               (None, "no_image"), timeout, procs.check_alive)
    if not ready:
        raise RuntimeError(f"nodes not ready after {timeout:.0f} s (sim status {'seen' if monitor.status else 'missing'}, "
                           f"node state {monitor.safety.get('state', 'missing')})")


def run_episodes(out_dir: Path, episodes: Sequence[tuple[int, str]], node_params: dict[str, Any], *,
                 episode_timeout: float, startup_timeout: float = 120.0,
                 progress: Callable[[str], None] = print) -> list[EpisodeLog]:
    """Start the nodes, run the (seed, instruction) episodes in turn, stop the nodes."""
    procs = start_nodes(out_dir, seed=episodes[0][0], node_params=node_params)
    monitor = None
    try:
        monitor = Monitor()
        progress("waiting for magma_sim and magma_node ...")
        wait_until_ready(monitor, procs, startup_timeout)
        logs = []
        for seed, instruction in episodes:
            progress(f"episode seed {seed}: {instruction!r}")
            logs.append(monitor.run_episode(seed, instruction, episode_timeout, procs.check_alive, progress))
            progress(f"episode seed {seed}: {'SUCCESS' if logs[-1].success else 'FAILURE'} after "
                     f"{logs[-1].steps} steps, {logs[-1].duration_s:.1f} s")
        return logs
    finally:
        procs.stop()
        if monitor is not None:
            monitor.close()
