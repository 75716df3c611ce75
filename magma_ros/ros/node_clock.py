"""magma_node's view of ROS time: seconds for the safety clock, header stamps, and a negative
/clock taken as a clock fault instead of an exception in the executor."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

from builtin_interfaces.msg import Time
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node

DIAGNOSTICS_PERIOD_S = 1.0


class RosClock:
    """ROS time of ``node`` (simulated with use_sim_time, else system time). While the last /clock
    was negative (rclpy keeps the time before it: it has no negative time) there is no time:
    ``seconds`` is -inf (the supervisor's clock fault) and stamps are 0."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.negative = False  # the last /clock message had a negative time
        self._last_tick = -math.inf  # monotonic times of the last command and diagnostics published
        self._last_diagnostics = -math.inf  # on a negative /clock
        self._checked = False

    def time_ns(self) -> int | None:
        """ROS time now (ns); None while it is negative."""
        if self.negative:
            return None
        try:
            return self._node.get_clock().now().nanoseconds
        except ValueError:  # a negative time that reached the clock another way: rclpy's Time refuses it
            return None

    def seconds(self) -> float:
        """ROS time now (s); -inf while it is negative."""
        ns = self.time_ns()
        return -math.inf if ns is None else ns * 1e-9

    def stamp(self) -> Time:
        """A header stamp for now; time 0 while ROS time is negative."""
        ns = self.time_ns()
        return Time() if ns is None else Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def watch(self, guard: Callable[[str, Callable[..., None]], Callable[..., None]],
              publish_period_s: Callable[[], float], command_now: Callable[[], object],
              diagnostics: Callable[[], None]) -> None:
        """With use_sim_time: a /clock that goes back (bag restart, simulator reset) commands zero
        at once (the supervisor sees the jump on that reading), not at the next tick. And a check
        for negative times goes in front of rclpy's own /clock subscription, which raises on one
        (in the executor, on every message): on a negative time, zero is commanded at most once
        per publish period and diagnostics published once per DIAGNOSTICS_PERIOD_S (the ROS time
        stands still, so their timers do not fire). Once per node (a managed node sets up again
        on every configure)."""
        self._jump_handle = self._node.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=True),
            post_callback=guard("clock jump", lambda jump: command_now()))
        if self._checked:
            return
        self._checked = True
        subscription = getattr(getattr(self._node, "_time_source", None), "_clock_sub", None)
        if subscription is None or not callable(getattr(subscription, "callback", None)):
            self._node.get_logger().warning("cannot check /clock for negative times in this rclpy: a negative "
                                            "/clock will be reported as an internal error")
            return
        forward = subscription.callback

        def on_clock(msg: Any) -> None:
            if msg.clock.sec >= 0:
                self.negative = False
                forward(msg)
                return
            self.negative = True
            now = time.monotonic()
            if now - self._last_tick >= publish_period_s():
                self._last_tick = now
                command_now()
            if now - self._last_diagnostics >= DIAGNOSTICS_PERIOD_S:
                self._last_diagnostics = now
                diagnostics()
        subscription.callback = guard("/clock", on_clock)
