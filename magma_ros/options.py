"""One declaration for every option of the package: node and simulator parameters, CLI flags, docs.

An :class:`Option` names a setting once (type, default, range or choices, read-only, description).
:func:`declare_options` turns a table of them into ROS parameters of a node, :func:`add_arguments`
into ``argparse`` flags (``--kebab-case``), :func:`parameter_help` into a ROS console script's
``--help`` and :func:`markdown_table` into the tables under ``docs/reference/``.
Pure Python: rclpy is imported only by :func:`declare_options` and :func:`descriptor`; no torch.
"""
from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

_KINDS = (bool, int, float, str, list)


@dataclass(frozen=True)
class Option:
    """One setting. ``type`` defaults to the type of ``default``; ``list`` means a list of floats.
    A default of None (give ``type``) is a command-line flag's "not given"; ROS parameters need a value."""

    name: str
    default: Any
    description: str
    type: type | None = None
    range: tuple[float, float] | None = None  # inclusive bounds for int and float options
    choices: tuple[str, ...] = ()
    read_only: bool = False  # ROS parameters: fixed after start-up
    repeated: bool = False  # CLI only: a flag given once per value, collected in a list of ``type``
    metavar: str = ""  # CLI only: how the flag's value is shown in --help

    def __post_init__(self) -> None:
        kind = self.type if self.type is not None else type(self.default)
        if kind is tuple:
            kind = list
        if kind not in _KINDS:
            raise TypeError(f"option {self.name}: unsupported type {kind.__name__}")
        if self.repeated and kind in (bool, list):
            raise TypeError(f"option {self.name}: a repeated option collects str, int or float values")
        object.__setattr__(self, "type", kind)

    @property
    def flag(self) -> str:
        """The command-line spelling: ``--kebab-case``."""
        return "--" + self.name.replace("_", "-")

    def constraint(self) -> str:
        """Range or choices in words ('' when unconstrained)."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.range is not None:
            low, high = self.range
            return f"{low:g} .. {high:g}"
        return ""

    def type_name(self) -> str:
        """``float``, ``list of float``, ``str (repeatable)``, ..."""
        kind = "list of float" if self.type is list else self.type.__name__
        return kind + (" (repeatable)" if self.repeated else "")


def defaults(options: Iterable[Option]) -> dict[str, Any]:
    """``{name: default}`` (lists copied)."""
    return {o.name: list(o.default) if o.type is list or o.repeated else o.default for o in options}


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, options: Iterable[Option],
                  **overrides: Any) -> None:
    """One ``--kebab-case`` flag per option (``dest`` is the option name); ``overrides`` replace defaults.

    A bool option that defaults to false is a plain switch (``--x``); one that defaults to true
    also gets ``--no-x``. A repeated option is given once per value (``append``).
    """
    for option in options:
        default = overrides.get(option.name, option.default)
        metavar = option.metavar or None
        if option.repeated:
            parser.add_argument(option.flag, dest=option.name, type=option.type, action="append",
                                default=list(default), metavar=metavar, help=option.description + " (repeatable)")
        elif option.type is list:
            parser.add_argument(option.flag, dest=option.name, type=float_list, default=list(default),
                                metavar=metavar or "X,Y,...", help=f"{option.description} (comma-separated)")
        elif option.type is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(option.flag, dest=option.name, action=action, default=bool(default),
                                help=option.description)
        else:
            shown = f" (default: {default!r})" if default not in ("", None) else ""  # None: not given
            parser.add_argument(option.flag, dest=option.name, type=option.type, default=default, metavar=metavar,
                                choices=list(option.choices) or None, help=option.description + shown)


def descriptor(option: Option, read_only: bool = False) -> Any:
    """The ``rcl_interfaces`` ``ParameterDescriptor`` of ``option``: type, description, range, choices
    (as additional constraints: not enforced by ROS, the option's user checks them), read-only."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    if option.repeated or option.default is None:
        raise TypeError(f"option {option.name}: repeated or without a default: a command-line flag, "
                        "not a ROS parameter")
    kinds = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
             list: ParameterType.PARAMETER_DOUBLE_ARRAY}
    result = ParameterDescriptor(name=option.name, type=kinds[option.type], description=option.description,
                                 read_only=read_only or option.read_only)
    if option.choices:
        result.additional_constraints = option.constraint()
    if option.range is not None and option.type is float:
        result.floating_point_range = [FloatingPointRange(from_value=float(option.range[0]),
                                                          to_value=float(option.range[1]))]
    elif option.range is not None and option.type is int:
        result.integer_range = [IntegerRange(from_value=int(option.range[0]), to_value=int(option.range[1]))]
    return result


def declare_options(node: Any, options: Iterable[Option], read_only_all: bool = False) -> dict[str, Any]:
    """Declare one ROS parameter per option on ``node`` (an ``rclpy`` Node; overrides from
    ``--ros-args`` / params files apply, a value outside the range raises rclpy's
    ``InvalidParameterValueException``) and return ``{name: value}``, ``list`` options as lists of
    floats. ``read_only_all`` makes every one read-only."""
    from rclpy.parameter import Parameter

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


def float_list(text: str) -> list[float]:
    """``'1, 2,3'`` -> ``[1.0, 2.0, 3.0]`` (an argparse type)."""
    try:
        return [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "" or value == [] or value == ():
        return "''" if isinstance(value, str) else "[]"
    return str(list(value)) if isinstance(value, tuple) else str(value)


def wants_help(argv: Sequence[str]) -> bool:
    """True when ``-h``/``--help`` comes before any ``--ros-args`` section (a ROS console script's argv)."""
    for arg in argv[1:]:
        if arg == "--ros-args":
            return False
        if arg in ("-h", "--help"):
            return True
    return False


def parameter_help(prog: str, summary: str, options: Iterable[Option], example: str) -> str:
    """``--help`` of a ROS console script: usage, ``summary``, one entry per parameter (type,
    default, range or choices, read-only) and an ``example`` command line."""
    lines = [f"usage: {prog} [--ros-args -p NAME:=VALUE ... | --params-file FILE]", "", summary, "",
             "parameters:"]
    for o in options:
        facts = [o.type_name(), f"default {_cell(o.default)}"]
        facts += [o.constraint()] if o.constraint() else []
        facts += ["read-only"] if o.read_only else []
        lines.append(f"  {o.name} ({'; '.join(facts)})")
        lines.extend(textwrap.wrap(o.description, width=92, initial_indent="      ", subsequent_indent="      "))
    lines += ["", "example:", f"  {example}"]
    return "\n".join(lines)


def markdown_table(options: Iterable[Option], flags: bool = False) -> str:
    """A Markdown table (name, type, default, range/choices, read-only, description) of ``options``;
    ``flags`` names them as command-line flags (``--kebab-case``) and drops the read-only column."""
    rows = ["| name | type | default | range / choices | read-only | description |",
            "|---|---|---|---|---|---|"]
    if flags:
        rows = ["| flag | type | default | range / choices | description |", "|---|---|---|---|---|"]
    for o in options:
        cells = [f"`{o.flag if flags else o.name}`", o.type_name(), f"`{_cell(o.default)}`", o.constraint()]
        cells += [] if flags else ["yes" if o.read_only else ""]
        cells.append(o.description.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;"))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
