"""The demo's monitor: an rclpy node beside ``magma_sim`` and ``magma_node`` that sends instructions
and resets and records what the loop does into an :class:`EpisodeLog`. Topic names and QoS come
from :mod:`magma_ros.interface` (absolute: the nodes run in the root namespace)."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import numpy as np

from ..image_msgs import image_to_rgb
from ..interface import (
    CLOCK,
    DIAGNOSTICS,
    GRIPPER,
    IMAGE,
    INSTRUCTION,
    SENSOR_PUB_QOS,
    SIM_RESET,
    SIM_STATUS,
    TWIST,
    Topic,
    message_class,
)
from .episode_log import EpisodeLog
from .report import CommandSample, Frame

FRAME_PERIOD_S = 0.2  # keep one camera frame per control period for the report


class Monitor:
    """Sends instructions and resets, follows status, diagnostics and commands. While an episode is
    recorded its times are simulated seconds (``/clock``) since the episode's start."""

    def __init__(self) -> None:
        import rclpy

        self._rclpy = rclpy
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self.node = rclpy.create_node("magma_demo_monitor")
        self._String, self._Int64 = message_class(INSTRUCTION.type), message_class(SIM_RESET.type)
        self.instruction_pub = self._publisher(INSTRUCTION)
        self.reset_pub = self._publisher(SIM_RESET)
        self._subscribe(SIM_STATUS, self._on_status)
        self._subscribe(CLOCK, self._on_clock)
        self._subscribe(IMAGE, self._on_image, SENSOR_PUB_QOS.profile())
        self._subscribe(TWIST, self._on_twist)
        self._subscribe(GRIPPER, self._on_gripper)
        self._subscribe(DIAGNOSTICS, self._on_diagnostics)
        self.status: dict[str, Any] | None = None
        self.safety: dict[str, str] = {}
        self.twist = (np.zeros(3), np.zeros(3))
        self.episode: EpisodeLog | None = None
        self.sim_time = 0.0  # the latest /clock (s)
        self.instruction: str | None = None  # the latest one sent
        self._t0 = 0.0
        self._last_frame = -np.inf

    def _publisher(self, topic: Topic) -> Any:
        return self.node.create_publisher(message_class(topic.type), topic.absolute, topic.qos.profile())

    def _subscribe(self, topic: Topic, callback: Callable[[Any], None], qos: Any = None) -> None:
        self.node.create_subscription(message_class(topic.type), topic.absolute, callback,
                                      qos if qos is not None else topic.qos.profile())

    def record(self, episode: EpisodeLog | None) -> None:
        """Record into ``episode`` from now on (its times count from here); ``None`` stops recording."""
        self.episode = episode
        self._t0 = self.sim_time
        self._last_frame = -np.inf

    # ---- callbacks ----
    def _now(self) -> float:
        return self.sim_time - self._t0

    def _on_clock(self, msg: Any) -> None:
        self.sim_time = msg.clock.sec + 1e-9 * msg.clock.nanosec

    def _on_status(self, msg: Any) -> None:
        self.status = json.loads(msg.data)
        ep = self.episode
        if ep is not None and self.status.get("seed") == ep.seed and self.status.get("distance") is not None:
            ep.distance.append((self._now(), float(self.status["distance"])))

    def _on_image(self, msg: Any) -> None:
        ep = self.episode
        if ep is None or self._now() - self._last_frame < FRAME_PERIOD_S - 1e-6 or self.status is None:
            return
        if self.status.get("seed") != ep.seed:
            return
        self._last_frame = self._now()
        ee = self.status.get("ee_position")
        ep.frames.append(Frame(time=self._now(), image=image_to_rgb(msg).copy(),
                               ee_position=None if ee is None else np.array(ee),
                               linear=self.twist[0].copy(), distance=self.status.get("distance")))

    def _on_twist(self, msg: Any) -> None:
        lin, ang = msg.twist.linear, msg.twist.angular
        self.twist = (np.array([lin.x, lin.y, lin.z]), np.array([ang.x, ang.y, ang.z]))
        if self.episode is not None:
            self.episode.commands.append(CommandSample(self._now(), *self.twist))

    def _on_gripper(self, msg: Any) -> None:
        if self.episode is not None:
            self.episode.gripper.append((self._now(), float(msg.data)))

    def _on_diagnostics(self, msg: Any) -> None:
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

    def close(self) -> None:
        """Destroy the node (and the context, if this monitor made it)."""
        self.node.destroy_node()
        if self._owns_context and self._rclpy.ok():
            self._rclpy.shutdown()
