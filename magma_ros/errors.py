"""Errors shared by every layer, and their one-line rendering."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, exit status 2."""


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (its type name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__
