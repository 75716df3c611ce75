"""The test run's ROS domains: xdist workers never share one, and all stay in the safe range."""
from __future__ import annotations

import os

import domains
import pytest


def worker_domains(monkeypatch, base: int, worker: str) -> set[int]:
    monkeypatch.setenv("ROS_DOMAIN_ID", os.environ["ROS_DOMAIN_ID"])  # restored after the test: this run's
    monkeypatch.setenv(domains.BASE_ENV, str(base))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    domains.configure()
    return {int(os.environ["ROS_DOMAIN_ID"])} | {domains.spare_domain(n) for n in range(1, domains.SPAN)}


@pytest.mark.parametrize("base", [1, 50, 97, 100, 101])
def test_workers_get_disjoint_domains_in_the_safe_range(monkeypatch, base):
    first, second = worker_domains(monkeypatch, base, "gw0"), worker_domains(monkeypatch, base, "gw1")
    assert len(first) == len(second) == domains.SPAN and not first & second
    assert all(1 <= d <= domains.LAST_SAFE for d in first | second)
    assert base in first


def test_the_run_keeps_its_domain(monkeypatch):
    before = os.environ["ROS_DOMAIN_ID"]
    with monkeypatch.context() as patch:
        worker_domains(patch, int(before) % 100 + 1, "gw1")
        assert os.environ["ROS_DOMAIN_ID"] != before
    assert os.environ["ROS_DOMAIN_ID"] == before


def test_a_worker_has_only_its_spares(monkeypatch):
    worker_domains(monkeypatch, 10, "gw0")
    with pytest.raises(ValueError, match="each worker has"):
        domains.spare_domain(domains.SPAN)
