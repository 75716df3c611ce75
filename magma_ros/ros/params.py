"""ROS parameter declarations from ``Option`` tables (the node, the gripper bridge, the simulator)."""
from __future__ import annotations

from typing import Any, Iterable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..options import Option
from ..policy.config import BACKEND_OPTIONS
from .settings import NODE_PARAMETERS

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
          list: ParameterType.PARAMETER_DOUBLE_ARRAY}


def descriptor(option: Option, read_only: bool = False) -> ParameterDescriptor:
    """The ``ParameterDescriptor`` of ``option``: type, description, range or choices, read-only."""
    if option.repeated or option.default is None:
        raise TypeError(f"option {option.name}: repeated or without a default: a command-line flag, "
                        "not a ROS parameter")
    result = ParameterDescriptor(name=option.name, type=_TYPES[option.type], description=option.description,
                                 read_only=read_only or option.read_only)
    if option.choices:
        result.additional_constraints = option.constraint()
    if option.range is not None and option.type is float:
        result.floating_point_range = [FloatingPointRange(from_value=float(option.range[0]),
                                                          to_value=float(option.range[1]))]
    elif option.range is not None and option.type is int:
        result.integer_range = [IntegerRange(from_value=int(option.range[0]), to_value=int(option.range[1]))]
    return result


def declare_options(node: Node, options: Iterable[Option], read_only_all: bool = False) -> dict[str, Any]:
    """Declare one ROS parameter per option (overrides from ``--ros-args`` / params files apply; a
    value outside the range raises rclpy's ``InvalidParameterValueException``) and return
    ``{name: value}``; ``list`` options come back as lists of floats. ``read_only_all`` makes every
    one read-only."""
    values: dict[str, Any] = {}
    for option in options:
        if option.type is list:
            # an empty list would be typed as a byte array: declare the type, then use the default if not overridden
            param = node.declare_parameter(option.name, Parameter.Type.DOUBLE_ARRAY, descriptor(option, read_only_all))
            values[option.name] = list(param.value) if param.value is not None else list(option.default)
        else:
            values[option.name] = node.declare_parameter(option.name, option.default,
                                                         descriptor(option, read_only_all)).value
    return values


def declare_parameters(node: Node) -> dict[str, Any]:
    """magma_node's parameters: its own table, then every backend option, read-only (the policy is
    built once at start-up)."""
    return declare_options(node, NODE_PARAMETERS) | declare_options(node, BACKEND_OPTIONS, read_only_all=True)
