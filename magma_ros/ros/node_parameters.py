"""Run-time parameter changes of magma_node: validated as a whole before they are accepted,
applied before they are acknowledged."""
from __future__ import annotations

from typing import Any, Callable

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from .node_errors import parameters_failed
from .settings import NodeSettings


def watch_parameters(node: Node, guard: Callable[..., Any], settings: Callable[[], NodeSettings],
                     apply: Callable[[NodeSettings], None]) -> bool:
    """Validate a change in the on-set callback (a bad value refuses it, with the reason) and
    ``apply`` the new settings in the post-set one (rclpy >= Iron; Humble has none: the on-set
    callback applies). Returns whether the post-set callback is used."""
    post_set = hasattr(node, "add_post_set_parameters_callback")

    def changed(params: list[Parameter]) -> NodeSettings:
        return settings().with_changes({p.name: p.value for p in params})

    def on_set(params: list[Parameter]) -> SetParametersResult:
        try:
            new = changed(params)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if not post_set:
            apply(new)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(guard("parameters", on_set, parameters_failed))
    if post_set:
        node.add_post_set_parameters_callback(guard("parameters", lambda params: apply(changed(params))))
    return post_set
