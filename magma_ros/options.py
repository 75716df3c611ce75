"""One declaration for every option of the package: node and simulator parameters, CLI flags, docs.

An :class:`Option` names a setting once (type, default, range or choices, read-only, description).
``magma_ros.ros.params`` turns a table of them into ROS parameter declarations, :func:`add_arguments`
into ``argparse`` flags (``--kebab-case``), :func:`markdown_table` into the tables under ``docs/``.
Pure Python: no ROS, no torch.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Iterable

_KINDS = (bool, int, float, str, list)


@dataclass(frozen=True)
class Option:
    """One setting. ``type`` defaults to the type of ``default``; ``list`` means a list of floats."""

    name: str
    default: Any
    description: str
    type: type | None = None
    range: tuple[float, float] | None = None  # inclusive bounds for int and float options
    choices: tuple[str, ...] = ()
    read_only: bool = False  # ROS parameters: fixed after start-up

    def __post_init__(self) -> None:
        kind = self.type if self.type is not None else type(self.default)
        if kind is tuple:
            kind = list
        if kind not in _KINDS:
            raise TypeError(f"option {self.name}: unsupported type {kind.__name__}")
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


def defaults(options: Iterable[Option]) -> dict[str, Any]:
    """``{name: default}`` (lists copied)."""
    return {o.name: list(o.default) if o.type is list else o.default for o in options}


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, options: Iterable[Option],
                  **overrides: Any) -> None:
    """One ``--kebab-case`` flag per option (``dest`` is the option name); ``overrides`` replace defaults."""
    for option in options:
        default = overrides.get(option.name, option.default)
        if option.type is list:
            parser.add_argument(option.flag, dest=option.name, type=float_list, default=list(default),
                                metavar="X,Y,...", help=f"{option.description} (comma-separated)")
        elif option.type is bool:
            parser.add_argument(option.flag, dest=option.name, action=argparse.BooleanOptionalAction,
                                default=bool(default), help=option.description)
        else:
            shown = f" (default: {default!r})" if default != "" else ""
            parser.add_argument(option.flag, dest=option.name, type=option.type, default=default,
                                choices=list(option.choices) or None, help=option.description + shown)


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


def markdown_table(options: Iterable[Option]) -> str:
    """A Markdown table (name, type, default, range/choices, read-only, description) of ``options``."""
    rows = ["| name | type | default | range / choices | read-only | description |",
            "|---|---|---|---|---|---|"]
    for o in options:
        description = o.description.replace("|", "\\|")
        rows.append(f"| `{o.name}` | {o.type.__name__} | `{_cell(o.default)}` | {o.constraint()} | "
                    f"{'yes' if o.read_only else ''} | {description} |")
    return "\n".join(rows) + "\n"
