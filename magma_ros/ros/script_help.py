"""``--help`` for the ROS console scripts, which otherwise take only ``--ros-args``."""
from __future__ import annotations

import textwrap
from typing import Any, Iterable, Sequence


def wants_help(argv: Sequence[str]) -> bool:
    """True when ``-h``/``--help`` comes before any ``--ros-args`` section."""
    for arg in argv[1:]:
        if arg == "--ros-args":
            return False
        if arg in ("-h", "--help"):
            return True
    return False


def parameter_help(prog: str, summary: str, params: Iterable[tuple[str, Any, str]], example: str) -> str:
    """Usage text: ``prog --ros-args -p name:=value ...`` and one entry per parameter."""
    lines = [f"usage: {prog} [--ros-args -p NAME:=VALUE ... | --params-file FILE]", "", summary, "",
             "parameters (default):"]
    for name, default, description in params:
        shown = "[]" if default == [] or default == () else ('""' if default == "" else repr(default))
        lines.append(f"  {name} ({shown})")
        lines.extend(textwrap.wrap(description, width=92, initial_indent="      ", subsequent_indent="      "))
    lines += ["", "example:", f"  {example}"]
    return "\n".join(lines)
