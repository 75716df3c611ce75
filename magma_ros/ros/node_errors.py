"""Exceptions in magma_node's own callbacks: reported (logged with the traceback, counted, the node
faulted and zero commanded), never raised into rclpy."""
from __future__ import annotations

import math
import time
import traceback
from typing import Any, Callable, TypeVar

from rcl_interfaces.msg import SetParametersResult
from rclpy.impl.rcutils_logger import RcutilsLogger

from ..safety.node_stats import NodeStats
from ..safety.supervisor import SafetySupervisor

THROTTLE_S = 2.0  # an internal error is logged at most this often per place
INTERNAL = "internal"  # fault source of an exception in the node's own code: cleared by ~/reset
T = TypeVar("T")


class ErrorReporter:
    """Reports for one node; ``command_now`` publishes zero after the fault, ``closed()`` is true
    once the node shuts down (nothing is reported then)."""

    def __init__(self, logger: RcutilsLogger, stats: NodeStats, supervisor: SafetySupervisor,
                 command_now: Callable[[], object], closed: Callable[[], bool]) -> None:
        self._logger = logger
        self._stats = stats
        self._supervisor = supervisor
        self._command_now = command_now
        self._closed = closed
        self._logged: dict[str, float] = {}  # where -> when its last internal error was logged

    def guard(self, where: str, callback: Callable[..., T],
              failed: Callable[..., T] | None = None) -> Callable[..., T | None]:
        """``callback`` for rclpy: an exception is reported and, for a service or parameter
        callback, ``failed(*args, message)`` makes its reply."""
        def guarded(*args: Any) -> T | None:
            try:
                return callback(*args)
            except Exception as exc:  # noqa: BLE001 - no exception may end the node
                message = self.report(where, exc)
                return failed(*args, message) if failed is not None else None
        return guarded

    def report(self, where: str, exc: BaseException) -> str:
        """Log ``exc`` with its traceback, count it, fault the node (zero until ~/reset) and command
        zero now. Returns the one-line message."""
        message = f"internal error in {where}: {type(exc).__name__}: {exc}"
        if self._closed():
            return message
        try:
            self._stats.count("internal_errors")
            self._supervisor.reject(INTERNAL, message + " (call ~/reset)")
            now = time.monotonic()
            if now - self._logged.get(where, -math.inf) >= THROTTLE_S:  # per place, not per call site
                self._logged[where] = now
                self._logger.error(message + "\n" + "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
            self._command_now()
        except Exception as again:  # noqa: BLE001 - reporting must not raise into rclpy either
            traceback.print_exception(type(again), again, again.__traceback__)
        return message


def service_failed(request: Any, response: Any, message: str) -> Any:
    """The reply of a std_srvs service whose callback failed."""
    response.success = False
    response.message = message
    return response


def parameters_failed(params: list, message: str) -> SetParametersResult:
    """The reply of a parameter callback that failed."""
    return SetParametersResult(successful=False, reason=message)
