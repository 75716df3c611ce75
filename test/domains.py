"""ROS domains of a test run. ``make test`` runs pytest-xdist workers side by side: each worker
gets a block of ``SPAN`` domains (its own, then spares for modules that need a domain no other
node shares), all derived from one random base the controlling process picks, so that no two
workers meet on a domain. Domains stay in 1..101, the range safe on every Linux host."""
from __future__ import annotations

import os
import random

SPAN = 4  # domains per worker
LAST_SAFE = 101
BASE_ENV = "MAGMA_TEST_DOMAIN_BASE"


def worker_index() -> int:
    """0 in a plain run and in xdist's gw0, 1 in gw1, ..."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def _wrap(domain: int) -> int:
    return (domain - 1) % LAST_SAFE + 1


def configure() -> None:
    """Set ``ROS_DOMAIN_ID`` for this process (before anything imports rclpy). A domain given from
    outside is the base; otherwise the first process picks one at random and its workers inherit it."""
    base = (os.environ.get(BASE_ENV) or os.environ.get("ROS_DOMAIN_ID")
            or str(random.SystemRandom().randint(1, LAST_SAFE)))
    os.environ[BASE_ENV] = base
    os.environ["ROS_DOMAIN_ID"] = str(_wrap(int(base) + worker_index() * SPAN))


def spare_domain(number: int) -> int:
    """This worker's spare domain ``number`` (1 .. SPAN - 1)."""
    if not 1 <= number < SPAN:
        raise ValueError(f"spare domain {number}: each worker has {SPAN - 1}")
    return _wrap(int(os.environ["ROS_DOMAIN_ID"]) + number)
