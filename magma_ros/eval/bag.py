"""Reading and writing rosbag2 bags (MCAP and sqlite3) with ``rosbags``, with errors that name
the bag, the topic and the time."""
from __future__ import annotations

import sqlite3
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import one_line as _one_line
from .errors import BagError

STORAGES = ("mcap", "sqlite3")
# What rosbags and the storage layers raise on bags that are damaged or cut short.
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, struct.error, sqlite3.Error, KeyError, ValueError,
                                                 TypeError, IndexError, RecursionError)


def format_time(t_ns: int) -> str:
    """A bag timestamp as seconds with nanoseconds, e.g. ``1700000000.250000000``."""
    return f"{t_ns // 1_000_000_000}.{t_ns % 1_000_000_000:09d}"


@contextmanager
def open_bag(path: str | Path) -> Iterator[Any]:
    """An open ``rosbags`` AnyReader for a rosbag2 directory (or one .mcap/.db3 file); ``BagError`` if unusable."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    path = Path(path).expanduser()
    if not path.exists():
        raise BagError(f"bag {path}: not found")
    if path.is_file() and path.suffix not in (".mcap", ".db3"):
        raise BagError(f"bag {path}: not a rosbag2 bag (expected a directory with metadata.yaml, "
                       f"or a .mcap or .db3 file)")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"bag {path}: not a rosbag2 directory (no metadata.yaml)")
    try:
        reader = AnyReader([path])
        reader.open()
    except (AnyReaderError, *READ_ERRORS) as exc:
        raise BagError(f"bag {path}: cannot open: {_one_line(exc)} ({_damage_hint(path)})") from None
    try:
        yield reader
    finally:
        reader.close()


def _damage_hint(path: Path) -> str:
    """What to try on a bag that does not open, by its storage (its data files' suffix)."""
    files = [path] if path.is_file() else list(path.iterdir())
    if any(f.suffix == ".mcap" for f in files):
        return ("truncated or corrupt? a recording that was killed leaves an MCAP without its summary; "
                "try `mcap recover`")
    if any(f.suffix == ".db3" for f in files):
        return "truncated or corrupt? check the .db3 file with `sqlite3 FILE.db3 'PRAGMA integrity_check'`"
    return "truncated or corrupt? no .mcap or .db3 data file found"


def topic_connections(reader: Any, bag: str | Path, topic: str, allowed_types: Sequence[str], role: str) -> list[Any]:
    """The connections of ``topic``; ``BagError`` if it is missing or has a type not in ``allowed_types``."""
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        available = ", ".join(f"{c.topic} ({c.msgtype})" for c in sorted(reader.connections, key=lambda c: c.topic))
        raise BagError(f"bag {bag}: {role} topic {topic} not found (topics in the bag: {available or 'none'})")
    for conn in conns:
        if conn.msgtype not in allowed_types:
            raise BagError(f"bag {bag}: {role} topic {topic} has type {conn.msgtype}, expected "
                           f"{' or '.join(allowed_types)}")
    return conns


def message_count(connections: Sequence[Any]) -> int:
    """Messages on these connections according to the bag's index."""
    return sum(int(c.msgcount) for c in connections)


def typestore() -> Any:
    """The ``rosbags`` type store holding the standard ROS 2 message types."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def check_output_bag(path: str | Path) -> Path:
    """``path`` as a bag directory that can be created: it must not exist and its parent must be a
    directory; ``BagError`` otherwise (checked before any waiting or recording starts)."""
    path = Path(path).expanduser()
    if path.exists() or path.is_symlink():
        raise BagError(f"output bag {path}: already exists, not overwriting")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise BagError(f"output bag {path}: cannot create: {parent} is not an existing directory")
    return path


@contextmanager
def open_writer(path: str | Path, storage: str = "mcap") -> Iterator[Any]:
    """A new rosbag2 ``Writer`` at ``path`` (which must not exist yet)."""
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    if storage not in STORAGES:
        raise BagError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    path = check_output_bag(path)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(path, version=9, storage_plugin=plugin)
        writer.open()
    except (WriterError, OSError) as exc:
        raise BagError(f"output bag {path}: cannot create: {_one_line(exc)}") from None
    try:
        yield writer
    finally:
        writer.close()
