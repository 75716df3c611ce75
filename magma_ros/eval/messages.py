"""rclpy message classes by type name, for the tools that record and replay bags."""
from __future__ import annotations

from typing import Any

from .. import interface
from .errors import BagError


def message_class(msgtype: str) -> Any:
    """The rclpy message class for ``pkg/msg/Type``; ``BagError`` when it is not installed."""
    package, _, name = msgtype.split("/")
    try:
        return interface.message_class(msgtype)
    except (ImportError, AttributeError):
        raise BagError(f"message type {msgtype}: not installed for rclpy "
                       f"(no module {package}.msg with {name})") from None
