"""Per-robot metrics of ``magma-ros serve``: a bounded table that evicts the least recently seen
robot into ``other``, reserved names, and client disconnects counted apart from errors."""
from __future__ import annotations

import pytest

from magma_ros.server.robots import MAX_ROBOTS, RobotMetrics, check_robot_id


def test_a_new_robot_beyond_the_limit_evicts_the_least_recently_seen():
    metrics = RobotMetrics()
    for i in range(MAX_ROBOTS):
        metrics.record(f"arm-{i}", 200, 0.01)
    metrics.record("arm-0", 500, 0.02)        # arm-0 seen again: arm-1 is now the least recently seen
    metrics.record("newcomer", 200, 0.03)
    metrics.record(None, 200, 0.01)
    snapshot = metrics.snapshot()
    assert "arm-1" not in snapshot and "arm-0" in snapshot and "newcomer" in snapshot
    assert len(snapshot) == MAX_ROBOTS + 2    # the named robots, other and anonymous
    assert snapshot["arm-0"]["requests"] == 2 and snapshot["arm-0"]["errors"] == 1
    assert snapshot["other"]["requests"] == 1 and snapshot["other"]["latency_ms"]["window"] == 1
    assert snapshot["anonymous"]["requests"] == 1
    metrics.record("late", 200, 0.01)         # evicts arm-2; its counts join arm-1's in other
    assert metrics.snapshot()["other"]["requests"] == 2
    assert sum(r["requests"] for r in metrics.snapshot().values()) == MAX_ROBOTS + 4


def test_disconnects_are_counted_but_are_not_errors():
    metrics = RobotMetrics()
    for status in (200, 499, 503, 422):
        metrics.record("arm", status, 0.01)
    arm = metrics.snapshot()["arm"]
    assert (arm["requests"], arm["errors"], arm["busy"], arm["disconnects"]) == (4, 2, 1, 1)


@pytest.mark.parametrize("name", ["other", "anonymous", "Other", "ANONYMOUS"])
def test_reserved_names_are_refused(name):
    problem = check_robot_id(name, "X-Robot-Id header")
    assert problem is not None and problem.startswith("X-Robot-Id header: ") and "reserved" in problem
    assert check_robot_id("other-arm", "X-Robot-Id header") is None
