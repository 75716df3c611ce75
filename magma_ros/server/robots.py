"""Per-robot identity and metrics: which arm sent a request, how many it sent, how long it waited.

A robot names itself with the ``X-Robot-Id`` header or, failing that, the OpenAI ``user`` field
of a chat request. Metrics keep counts and the latencies of each robot's latest requests. At most
``MAX_ROBOTS`` robots are tracked one by one: a new robot beyond that evicts the least recently seen
one, whose counts move to ``OTHER`` (so the totals stay whole). ``ANONYMOUS`` (requests naming no
robot) and ``OTHER`` are reserved: no robot may take these names.
"""
from __future__ import annotations

import collections
import re
import threading
from dataclasses import dataclass, field

import numpy as np

ROBOT_ID_HEADER = "x-robot-id"
ANONYMOUS = "anonymous"
OTHER = "other"
RESERVED_IDS = (ANONYMOUS, OTHER)
MAX_ROBOTS = 1024          # robots tracked one by one; a new one beyond this evicts the least recently seen
LATENCY_WINDOW = 1000      # latest requests per robot used for the percentiles
CLIENT_CLOSED = 499        # status logged when the client disconnected before its answer (nginx's code)
_VALID_ID = re.compile(r"[A-Za-z0-9_./:@-]{1,128}")


def check_robot_id(value: str, where: str) -> str | None:
    """``value`` if it is a valid robot id, else an error message naming ``where``."""
    if value.lower() in RESERVED_IDS:
        return f"{where}: {value!r} is reserved in /v1/stats ({', '.join(RESERVED_IDS)}); choose another robot id"
    if _VALID_ID.fullmatch(value):
        return None
    return (f"{where}: a robot id is 1 to 128 characters of letters, digits and _ . / : @ -, "
            f"got {value[:40]!r}{'...' if len(value) > 40 else ''}")


@dataclass
class _Robot:
    requests: int = 0
    errors: int = 0          # answers with status >= 400 (503 included), client disconnects excluded
    busy: int = 0            # 503 answers: the robot was turned away
    disconnects: int = 0     # requests whose client went away before the answer (logged as 499)
    latencies_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))

    def absorb(self, other: "_Robot") -> None:
        """Add ``other``'s counts and latest latencies to this one."""
        self.requests += other.requests
        self.errors += other.errors
        self.busy += other.busy
        self.disconnects += other.disconnects
        self.latencies_s.extend(other.latencies_s)


class RobotMetrics:
    """Thread-safe per-robot counters for the model endpoints (``record`` from the access log)."""

    def __init__(self, max_robots: int = MAX_ROBOTS) -> None:
        self._max_robots = max_robots
        self._robots: collections.OrderedDict[str, _Robot] = collections.OrderedDict()  # least recently seen first
        self._shared = {ANONYMOUS: _Robot(), OTHER: _Robot()}  # never evicted
        self._lock = threading.Lock()

    def record(self, robot_id: str | None, status: int, latency_s: float) -> None:
        """Count one finished request of ``robot_id`` (None: anonymous)."""
        with self._lock:
            robot = self._robot_locked(robot_id)
            robot.requests += 1
            robot.errors += status >= 400 and status != CLIENT_CLOSED
            robot.busy += status == 503
            robot.disconnects += status == CLIENT_CLOSED
            robot.latencies_s.append(latency_s)

    def _robot_locked(self, robot_id: str | None) -> _Robot:
        if robot_id is None or robot_id in self._shared:  # reserved names are refused before they get here
            return self._shared[robot_id or ANONYMOUS]
        robot = self._robots.get(robot_id)
        if robot is not None:
            self._robots.move_to_end(robot_id)
            return robot
        if len(self._robots) >= self._max_robots:
            _, evicted = self._robots.popitem(last=False)
            self._shared[OTHER].absorb(evicted)
        robot = self._robots[robot_id] = _Robot()
        return robot

    def snapshot(self) -> dict[str, dict]:
        """Per robot: requests, errors, busy (503), disconnects and latency p50/p99/max in ms over its
        latest requests; ``anonymous`` and ``other`` only once they counted a request."""
        with self._lock:
            entries = {**self._robots, **{k: r for k, r in self._shared.items() if r.requests}}
            robots = {key: (r.requests, r.errors, r.busy, r.disconnects, np.array(r.latencies_s))
                      for key, r in entries.items()}
        out = {}
        for key, (requests, errors, busy, disconnects, lat) in sorted(robots.items()):
            ms = lat * 1000.0
            out[key] = {"requests": requests, "errors": errors, "busy": busy, "disconnects": disconnects,
                        "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 2),
                                       "p99": round(float(np.percentile(ms, 99)), 2),
                                       "max": round(float(ms.max()), 2), "window": int(ms.size)}}
        return out
