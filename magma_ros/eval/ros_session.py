"""A short-lived rclpy context with one node and an executor thread, stopped cleanly on Ctrl-C or
SIGTERM. Shared by ``record`` and ``replay``."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from ..rcl_startup import init_rclpy, node_startup


class RosSession:
    """An initialized context, a node spun in a background thread, and a stop event. ``RosStartupError``
    (one line, exit 2) when rcl rejects ``ros_args``."""

    def __init__(self, node_name: str, ros_args: Sequence[str]) -> None:
        self.context = rclpy.Context()
        # Our own SIGINT/SIGTERM handling (below) stops cleanly so that the bag is always closed.
        init_rclpy(["magma-ros", "--ros-args", *ros_args] if ros_args else None, context=self.context,
                   signal_handler_options=SignalHandlerOptions.NO)
        try:
            with node_startup():
                self.node = Node(node_name, context=self.context)
        except BaseException:
            rclpy.shutdown(context=self.context)
            raise
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"{node_name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok() and not self.stop.is_set():
                self.executor.spin_once(timeout_sec=0.05)
        except ExternalShutdownException:
            pass

    def wait(self, seconds: float | None) -> None:
        """Block until ``stop`` is set or ``seconds`` have passed (None: until stopped)."""
        self.stop.wait(seconds)

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self.stop.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)


@contextmanager
def ros_session(node_name: str, ros_args: Sequence[str] = ()) -> Iterator[RosSession]:
    """A ``RosSession`` whose ``stop`` event is set by SIGINT and SIGTERM (main thread only)."""
    session = RosSession(node_name, ros_args)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: session.stop.set())
    try:
        yield session
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
        session.close()
