"""Start-up of a process that takes ``--ros-args``: what rcl rejects becomes one line, exit 2.

rcl parses ``--ros-args`` (parameter overrides, remappings, params files, log levels) in
``rclpy.init`` and applies them when a node is created or declares its parameters. A mistake
there surfaces as rclpy's ``RCLError`` (with C source locations) or a parameter type exception,
and rcl logs its own error line besides. :func:`init_rclpy` and :func:`node_startup` turn these
into :class:`RosStartupError` (a ``UserError``: one line on stderr, exit 2) that names the likely
cause. Used by magma_node, magma_sim, interbotix_gripper_bridge and ``magma-ros record``/``replay``.
Pure Python at import: rclpy is imported only inside the functions.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from .errors import UserError, one_line

# (pattern in rcl's or rclpy's message, the likely cause and its fix), first match wins
HINTS: tuple[tuple[str, str], ...] = (
    (r"Sequence should be of same type|expecting type 'DOUBLE_ARRAY'",
     "a list parameter mixes types or has integers: write every element as a float, e.g. "
     "fixed_action:=\"[0.0,0.0,0.0,0.0,0.0,0.0,1.0]\""),
    (r"expecting type 'DOUBLE'", "write a float parameter with a decimal point, e.g. 5.0, not 5"),
    (r"expecting type 'INTEGER'", "write an integer parameter without a decimal point, e.g. 5"),
    (r"expecting type 'BOOL'", "write a bool parameter as true or false"),
    (r"expecting type 'STRING'", "the value was read as a number or bool: quote it, e.g. name:=\"'5'\""),
    (r"expecting type", "write the value in the parameter's type, as --help lists it"),
    (r"__ns:=|invalid node namespace", "a namespace is absolute, without a trailing slash, e.g. -r __ns:=/robot1"),
    (r"__node:=|invalid node name", "a node name has letters, digits and underscores, e.g. -r __node:=arm1"),
    (r"remap rule|--remap|-r flag", "a remapping is -r FROM:=TO, e.g. -r camera/image_raw:=/wrist/image"),
    (r"params file", "check that the file exists and is a ROS 2 parameters YAML"),
    (r"log level", "a log level is one of debug, info, warn, error, fatal, e.g. --log-level debug"),
    (r"parameter override rule|-p flag", "a parameter override is -p name:=value"),
)


class RosStartupError(UserError):
    """ROS rejected the ``--ros-args`` of the command line, or the node they configure."""


def describe(exc: BaseException) -> str:
    """rcl's or rclpy's message on one line, without C source locations, and the likely cause."""
    text = one_line(exc).split(", at /")[0].split(", at ./")[0]
    text = re.sub(r"^(failed to initialize rcl|error creating node): ", "", text)
    hint = next((fix for pattern, fix in HINTS if re.search(pattern, text)), "")
    return f"--ros-args: {text}" + (f" ({hint})" if hint else "")


def startup_errors() -> tuple[type[BaseException], ...]:
    """The exceptions through which rclpy reports ``--ros-args`` it cannot parse or apply."""
    from rclpy.exceptions import InvalidParameterTypeException
    from rclpy.impl.implementation_singleton import rclpy_implementation

    return getattr(rclpy_implementation, "RCLError", RuntimeError), InvalidParameterTypeException


def init_rclpy(args: Sequence[str] | None, **kwargs: Any) -> Any:
    """``rclpy.init(args=args, **kwargs)``; ``RosStartupError`` if rcl rejects the arguments. rcl's
    own log lines while parsing are held back, and shown only when the start succeeds."""
    import rclpy

    with _stderr_held() as drop_held:
        try:
            return rclpy.init(args=args, **kwargs)
        except startup_errors() as exc:
            drop_held()
            raise RosStartupError(describe(exc)) from None


@contextmanager
def node_startup() -> Iterator[None]:
    """Around node creation: an rcl failure or a parameter override of the wrong type raises
    ``RosStartupError`` (other errors pass unchanged)."""
    try:
        with warnings.catch_warnings():  # rclpy's note on cleaning up the node it failed to create
            warnings.filterwarnings("ignore", "Failed to fini rosout publisher", RuntimeWarning)
            yield
    except startup_errors() as exc:
        raise RosStartupError(describe(exc)) from None


@contextmanager
def _stderr_held() -> Iterator[Callable[[], None]]:
    """Redirect file descriptor 2 (where C code writes) to a temporary file; on leaving, restore it
    and write back what was held, unless the function yielded was called to drop it."""
    dropped = False

    def drop() -> None:
        nonlocal dropped
        dropped = True

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no stderr to hold back from
        yield drop
        return
    with tempfile.TemporaryFile() as spool:
        os.dup2(spool.fileno(), 2)
        try:
            yield drop
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            spool.seek(0)
            held = spool.read()
            if held and not dropped:
                os.write(2, held)
