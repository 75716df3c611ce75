"""Declare the node's parameters (its own table plus every backend option) with descriptors."""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..policy.config import BACKEND_OPTIONS
from .settings import NODE_PARAMETERS

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
          list: ParameterType.PARAMETER_DOUBLE_ARRAY}


def _descriptor(name: str, kind: type, description: str, value_range: tuple[float, float] | None = None,
                read_only: bool = False, choices: tuple[str, ...] = ()) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=name, type=_TYPES[kind], description=description, read_only=read_only)
    if choices:
        descriptor.additional_constraints = "one of: " + ", ".join(choices)
    if value_range is not None and kind is float:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(value_range[0]),
                                                              to_value=float(value_range[1]))]
    elif value_range is not None and kind is int:
        descriptor.integer_range = [IntegerRange(from_value=int(value_range[0]), to_value=int(value_range[1]))]
    return descriptor


def declare_parameters(node: Node) -> dict[str, Any]:
    """Declare all parameters once (overrides from --ros-args / params files apply) and return
    their values. Backend options are read-only: the policy is built once at start-up."""
    specs = [(p.name, list if p.array else type(p.default), p.default, p.description, p.range, p.read_only, ())
             for p in NODE_PARAMETERS]
    specs += [(s.name, s.type, s.default, s.description, None, True, s.choices) for s in BACKEND_OPTIONS]
    values: dict[str, Any] = {}
    for name, kind, default, description, value_range, read_only, choices in specs:
        descriptor = _descriptor(name, kind, description, value_range, read_only, choices)
        if kind is list:
            # an empty list would be typed as a byte array: declare the type, then set [] if not overridden
            param = node.declare_parameter(name, Parameter.Type.DOUBLE_ARRAY, descriptor)
            value = list(param.value) if param.value is not None else list(default)
        else:
            value = node.declare_parameter(name, default, descriptor).value
        values[name] = value
    return values
