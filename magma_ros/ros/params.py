"""magma_node's parameter declarations: its own table, then every backend option."""
from __future__ import annotations

from typing import Any

from rclpy.node import Node

from ..options import declare_options
from ..policy.config import BACKEND_OPTIONS
from .settings import NODE_PARAMETERS


def declare_parameters(node: Node) -> dict[str, Any]:
    """Declare and read magma_node's parameters; the backend options are read-only (the policy is
    built once at start-up)."""
    return declare_options(node, NODE_PARAMETERS) | declare_options(node, BACKEND_OPTIONS, read_only_all=True)
