"""Per-robot identity and metrics: which arm sent a request, how many it sent, how long it waited.

A robot names itself with the ``X-Robot-Id`` header or, failing that, the OpenAI ``user`` field
of a chat request. Metrics keep counts and the latencies of each robot's latest requests; the
number of robots tracked is bounded, later ones are counted together under ``OTHER``.
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
MAX_ROBOTS = 1024          # distinct ids tracked; more are counted under OTHER
LATENCY_WINDOW = 1000      # latest requests per robot used for the percentiles
_VALID_ID = re.compile(r"[A-Za-z0-9_./:@-]{1,128}")


def check_robot_id(value: str, where: str) -> str | None:
    """``value`` if it is a valid robot id, else an error message naming ``where``."""
    if _VALID_ID.fullmatch(value):
        return None
    return (f"{where}: a robot id is 1 to 128 characters of letters, digits and _ . / : @ -, "
            f"got {value[:40]!r}{'...' if len(value) > 40 else ''}")


@dataclass
class _Robot:
    requests: int = 0
    errors: int = 0          # answers with status >= 400 (503 included)
    busy: int = 0            # 503 answers: the robot was turned away
    latencies_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))


class RobotMetrics:
    """Thread-safe per-robot counters for the model endpoints (``record`` from the access log)."""

    def __init__(self) -> None:
        self._robots: dict[str, _Robot] = {}
        self._lock = threading.Lock()

    def record(self, robot_id: str | None, status: int, latency_s: float) -> None:
        """Count one finished request of ``robot_id`` (None: anonymous)."""
        key = robot_id or ANONYMOUS
        with self._lock:
            robot = self._robots.get(key)
            if robot is None:
                if len(self._robots) >= MAX_ROBOTS:
                    key = OTHER
                robot = self._robots.setdefault(key, _Robot())
            robot.requests += 1
            robot.errors += status >= 400
            robot.busy += status == 503
            robot.latencies_s.append(latency_s)

    def snapshot(self) -> dict[str, dict]:
        """Per robot: requests, errors, busy (503) and latency p50/p99/max in ms over its latest requests."""
        with self._lock:
            robots = {key: (r.requests, r.errors, r.busy, np.array(r.latencies_s)) for key, r in self._robots.items()}
        out = {}
        for key, (requests, errors, busy, lat) in sorted(robots.items()):
            ms = lat * 1000.0
            out[key] = {"requests": requests, "errors": errors, "busy": busy,
                        "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 2),
                                       "p99": round(float(np.percentile(ms, 99)), 2),
                                       "max": round(float(ms.max()), 2), "window": int(ms.size)}}
        return out
