"""magma_node's command output: the supervisor's command on the twist topic, with a fresh stamp,
on every tick of the publish loop, at once on a change, and a final zero at shutdown."""
from __future__ import annotations

import threading
from typing import Any, Callable

from geometry_msgs.msg import TwistStamped
from rclpy.duration import Duration
from rclpy.node import Node

from ..interface import TWIST
from ..safety.node_stats import NodeStats
from ..safety.supervisor import Command, SafetyState, SafetySupervisor
from .diagnostics import twist_message
from .periodic import PeriodicThread

FINAL_ACK_TIMEOUT_S = 1.0  # how long shutdown waits for subscribers to acknowledge the final zero twist


class CommandOutput:
    """Publishes on ``topic`` for ``node``; ``frame_id()`` names the frame, ``stamp()`` makes the
    stamp, ``on_change`` runs after a command whose state changed (diagnostics)."""

    def __init__(self, node: Node, topic: str, supervisor: SafetySupervisor, stats: NodeStats,
                 frame_id: Callable[[], str], stamp: Callable[[], Any], on_change: Callable[[], None]) -> None:
        self._node = node
        self.pub = node.create_publisher(TwistStamped, topic, TWIST.qos.profile())
        self._supervisor = supervisor
        self._stats = stats
        self._frame_id = frame_id
        self._stamp = stamp
        self._on_change = on_change
        self.lock = threading.Lock()  # held while a command is decided and published
        self.last: Command | None = None
        self.closed = False
        self._loop: PeriodicThread | None = None

    def run_periodically(self, period_s: float, tick: Callable[[], None],
                         report: Callable[[str, BaseException], object]) -> None:
        """``tick`` every ``period_s`` on a thread of its own, not an executor timer: its callbacks
        queue behind the executor's wait-set rebuilds and image takes (jitter measured in
        bench/node_latency.py; see periodic.py). A failed tick is reported (fault: zero) and the
        loop goes on, until the context is shut down or the output closed."""
        def on_error(exc: BaseException) -> bool:
            if not self._node.context.ok() or self.closed:
                return False
            report("the publish thread", exc)
            return True
        self._loop = PeriodicThread(period_s, tick, on_error)
        self._loop.start()

    def stop_loop(self) -> None:
        """Stop the publish thread (it must not publish through a destroyed node)."""
        if self._loop is not None and not self._loop.stop():
            self._node.get_logger().warning("publish thread still busy at shutdown")

    def publish(self, final: bool = False) -> Command | None:
        """Publish the supervisor's command for now with a fresh stamp (nothing once a disabled
        node's stop has been published for disabled_zero_s); after ``close``, only the ``final`` one."""
        with self.lock:
            if self.closed and not final:
                return None
            # stamped before the decision: a twist decided before a clock jump never carries a later stamp
            stamp = self._stamp()
            command = self.last = self._supervisor.tick()
            if not (command.publish or final):
                return command
            self.pub.publish(twist_message(stamp, self._frame_id(), command.twist))
            self._stats.publish_rate.mark()
            self._stats.count("commands_published")
        if command.changed and not final:
            self._log_state(command)
            self._on_change()
        return command

    def _log_state(self, command: Command) -> None:
        """A new state, logged at its level (rclpy wants one severity per call site)."""
        text = f"state {command.state.value}: {command.reason}"
        if command.state is SafetyState.ACTIVE:
            self._node.get_logger().info(text)
        elif command.state in (SafetyState.ESTOP, SafetyState.FAULT):
            self._node.get_logger().error(text)
        else:
            self._node.get_logger().warning(text)

    def close(self) -> None:
        """From now on only the final command is published."""
        with self.lock:
            self.closed = True

    def publish_final(self) -> None:
        """The final zero (the supervisor is disabled), acknowledged by reliable subscribers before
        the node and its writer are gone; a failure is logged (the context may be shut down)."""
        try:
            self.publish(final=True)
            if not self.pub.wait_for_all_acked(Duration(seconds=FINAL_ACK_TIMEOUT_S)):
                self._node.get_logger().warning("final zero twist not acknowledged by every subscriber")
        except Exception as exc:  # noqa: BLE001 - the context may already be shut down
            self._node.get_logger().warning(f"could not publish the final zero twist: {exc}")
