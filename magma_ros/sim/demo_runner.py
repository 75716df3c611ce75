"""The closed loop over ROS 2: ``magma_sim`` and ``magma_node`` as processes, watched from here.

Starts both nodes (by default in lockstep on simulated time: ``magma_sim -p lockstep:=true``,
``magma_node -p use_sim_time:=true``), sends the instruction, follows the episode on ``/sim/status``,
``/diagnostics`` and the node's commands, and records camera frames and commands for the report.
Episode times are simulated seconds, so with lockstep an episode's outcome does not depend on the
CPU. Used by ``python -m magma_ros.demo`` (``make demo``) and by the end-to-end tests.
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
    steps: int = 0  # actions magma_node decoded in this episode (counted by magma_sim)
    duration_s: float = 0.0  # simulated seconds
    wall_s: float = 0.0
    final_distance: float | None = None
    lockstep_timeouts: int = 0  # waits for the controller that gave up (0: the run is reproducible)
    safety_states: list[str] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    commands: list[CommandSample] = field(default_factory=list)
    gripper: list[tuple[float, float]] = field(default_factory=list)
    distance: list[tuple[float, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready outcome."""
        return {"seed": self.seed, "instruction": self.instruction, "success": self.success, "steps": self.steps,
                "duration_s": round(self.duration_s, 3), "final_distance_m": self.final_distance,
                "wall_s": round(self.wall_s, 1), "lockstep_timeouts": self.lockstep_timeouts,
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


def start_nodes(out_dir: Path, *, seed: int, node_params: dict[str, Any], lockstep: bool = True,
                control_rate_hz: float = 5.0) -> NodeProcesses:
    """Start ``magma_sim`` and ``magma_node`` with this interpreter; logs go to ``out_dir``. With
    ``lockstep`` the simulator waits for the node, which runs on simulated time, and takes one
    camera frame per control period (``control_rate_hz``, the node's robot profile's rate)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sim_log = open(out_dir / "magma_sim.log", "w", encoding="utf-8")
    node_log = open(out_dir / "magma_node.log", "w", encoding="utf-8")
    sim_args = [sys.executable, "-m", "magma_ros.sim.sim_main", "--ros-args", "-p", f"seed:={seed}"]
    if lockstep:
        sim_args += ["-p", "lockstep:=true", "-p", f"camera_rate_hz:={float(control_rate_hz)}"]
        node_params = {**node_params, "use_sim_time": True}
    sim = subprocess.Popen(sim_args, stdout=sim_log, stderr=subprocess.STDOUT, env=env)
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
    """An rclpy node that sends instructions and resets and records what the loop does. Its times
    are simulated seconds (``/clock``) since the episode's reset."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import TwistStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float64, Int64, String

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
        self.node.create_subscription(Clock, "/clock", self._on_clock, 10)
        self.node.create_subscription(Image, "/camera/image_raw", self._on_image, qos_profile_sensor_data)
        self.node.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", self._on_twist, 10)
        self.node.create_subscription(Float64, "/magma/gripper_command", self._on_gripper, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.status: dict[str, Any] | None = None
        self.safety: dict[str, str] = {}
        self.twist = (np.zeros(3), np.zeros(3))
        self.episode: EpisodeLog | None = None
        self.sim_time = 0.0  # the latest /clock (s)
        self.instruction: str | None = None  # the latest one sent
        self._t0 = 0.0
        self._last_frame = -np.inf

    # ---- callbacks ----
    def _now(self) -> float:
        return self.sim_time - self._t0

    def _on_clock(self, msg) -> None:
        self.sim_time = msg.clock.sec + 1e-9 * msg.clock.nanosec

    def _on_status(self, msg) -> None:
        self.status = json.loads(msg.data)
        ep = self.episode
        if ep is not None and self.status.get("seed") == ep.seed and self.status.get("distance") is not None:
            ep.distance.append((self._now(), float(self.status["distance"])))

    def _on_image(self, msg) -> None:
        ep = self.episode
        if ep is None or self._now() - self._last_frame < FRAME_PERIOD_S - 1e-6 or self.status is None:
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

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "state" in values and "actions_executed" in values:
                self.safety = values

    # ---- driving ----
    def spin_until(self, condition: Callable[[], bool], timeout: float, check: Callable[[], None] = lambda: None,
                   every: Callable[[], None] | None = None, period: float = 0.5) -> bool:
        """Spin until ``condition()`` or ``timeout`` wall-clock seconds; ``every()`` runs each ``period`` s."""
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

    def reset(self, seed: int, check: Callable[[], None], timeout: float = 60.0) -> dict[str, Any]:
        """Reset the simulator to ``seed`` and wait for its status from the new episode."""
        before = (self.status or {}).get("episode", -1)
        self.reset_pub.publish(self._Int64(data=seed))
        if not self.spin_until(lambda: bool(self.status) and self.status.get("seed") == seed
                               and self.status.get("episode", -1) > before, timeout, check):
            raise RuntimeError(f"magma_sim did not confirm the reset to seed {seed} within {timeout:.0f} s")
        return self.status

    def send_instruction(self, instruction: str, check: Callable[[], None], timeout: float = 120.0) -> None:
        """Send ``instruction`` and wait until magma_node reports it."""
        self.instruction_pub.publish(self._String(data=instruction))
        self.instruction = instruction
        if not self.spin_until(lambda: self.safety.get("instruction") == instruction, timeout, check):
            raise RuntimeError(f"magma_node did not report the instruction {instruction!r} within {timeout:.0f} s")

    def run_episode(self, seed: int, instruction: str, timeout: float, check: Callable[[], None],
                    progress: Callable[[str], None]) -> EpisodeLog:
        """Reset the sim with ``seed`` under ``instruction``, follow until success or ``timeout``
        simulated seconds. A new instruction is sent while the simulator holds still after a first
        reset (no camera frames, so no answer of magma_node is cut short by it), then the scene is
        reset again: the episode starts from the same state of both nodes every time."""
        if instruction != self.instruction:
            self.reset(seed, check)
            self.send_instruction(instruction, check)
        start = self.reset(seed, check)
        ep = EpisodeLog(seed=seed, instruction=instruction)
        episode = start["episode"]
        wall_start = time.monotonic()
        self._t0 = self.sim_time
        self._last_frame = -np.inf
        self.episode = ep

        def ours() -> dict[str, Any]:
            s = self.status or {}
            return s if s.get("episode") == episode and s.get("instruction") == instruction else {}

        def report() -> None:
            state = self.safety.get("state", "?")
            if not ep.safety_states or ep.safety_states[-1] != state:
                ep.safety_states.append(state)
            dist = ours().get("distance")
            lin = self.twist[0]
            progress(f"t={ours().get('time', 0.0):5.1f}s  step {ours().get('actions', 0):3d}  distance "
                     f"{'   ?  ' if dist is None else f'{100 * dist:5.1f} cm'}  safety {state:<14} "
                     f"twist [{lin[0]:+.3f} {lin[1]:+.3f} {lin[2]:+.3f}] m/s")

        def over() -> bool:
            return bool(ours().get("success")) or ours().get("time", 0.0) >= timeout

        wall_limit = 60.0 + 20.0 * timeout
        if not self.spin_until(over, wall_limit, check, every=report):
            raise RuntimeError(f"episode seed {seed}: {timeout:g} simulated seconds did not pass within "
                               f"{wall_limit:.0f} s of wall-clock time (see magma_sim.log)")
        report()
        self.episode = None
        final = ours()
        ep.success = bool(final.get("success"))
        ep.steps = int(final.get("actions", 0))
        ep.duration_s = float(final.get("time", 0.0))
        ep.final_distance = final.get("distance")
        ep.lockstep_timeouts = int(final.get("lockstep_timeouts", 0)) - int(start.get("lockstep_timeouts", 0))
        ep.wall_s = time.monotonic() - wall_start
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
                 episode_timeout: float, lockstep: bool = True, control_rate_hz: float = 5.0,
                 startup_timeout: float = 120.0, progress: Callable[[str], None] = print) -> list[EpisodeLog]:
    """Start the nodes, run the (seed, instruction) episodes in turn (``episode_timeout`` in
    simulated seconds), stop the nodes."""
    procs = start_nodes(out_dir, seed=episodes[0][0], node_params=node_params, lockstep=lockstep,
                        control_rate_hz=control_rate_hz)
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
                     f"{logs[-1].steps} steps, {logs[-1].duration_s:.2f} s simulated ({logs[-1].wall_s:.1f} s wall)")
        return logs
    finally:
        procs.stop()
        if monitor is not None:
            monitor.close()
