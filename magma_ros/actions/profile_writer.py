"""A robot profile as commented YAML text, checked to load back as exactly the profile meant."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .errors import ProfileError
from .profiles import DEFAULT_PROMPT_TEMPLATE, RobotProfile, load_profile, parse_profile, profile_data
from .stats import COUNT_KEYS, PER_AXIS_KEYS

DEFAULT_IMAGE_SIZE = (256, 256)  # what the built-in profiles use
DEFAULT_PROMPT = DEFAULT_PROMPT_TEMPLATE  # the prompt a profile without one gets
SECTION_COMMENTS = {
    "image_size": "[width, height] the model sees",
    "normalization": "x, y, z, roll, pitch, yaw, gripper (OpenVLA/Magma dataset statistics form)",
    "limits": "per control step, per axis; covers every decodable action (q01..q99) with a margin",
}


def profile_text(data: Mapping[str, Any], header: str, comments: Mapping[str, str] = ()) -> tuple[str, RobotProfile]:
    """YAML text of the profile mapping ``data`` (keys in the built-in profiles' order, ``header``
    as leading comment lines, ``comments`` after top-level keys) and the profile it loads as.
    ``ProfileError`` if ``data`` is not a valid profile or would not load back unchanged."""
    notes = {**SECTION_COMMENTS, **dict(comments)}
    lines = [f"# {_escaped(line)}".rstrip() for line in header.splitlines()]
    for key, value in data.items():
        note = f"  # {notes[key]}" if key in notes else ""
        if isinstance(value, Mapping):
            lines.append(f"{key}:{note}")
            lines.extend(f"  {k}: {_scalar(v)}" for k, v in value.items())
        else:
            lines.append(f"{key}: {_scalar(value)}{note}")
    text = "\n".join(lines) + "\n"
    loaded, profile = parse_profile(text, "generated profile")
    if loaded != _plain(data):
        raise ProfileError(f"profile {data.get('name')!r}: YAML text does not load back as written")
    return text, profile


def write_profile_variant(path: Path, base: str | Path, overrides: Mapping[str, Any], header: str) -> RobotProfile:
    """Write profile ``base`` (built-in name or path) with ``overrides`` replacing top-level keys to
    ``path`` (replaced if present, written atomically), after validating the result; the profile as
    loaded back from ``path``."""
    data, _ = profile_data(base, overrides)
    text, _ = profile_text(data, header)
    write_atomically(path, text, overwrite=True)
    return load_profile(path)


def write_atomically(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename, so
    the file is either complete or absent; refuse an existing ``path`` unless ``overwrite``."""
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ProfileError(f"{path}: already exists (give --overwrite to replace it)")
    if path.is_dir():
        raise ProfileError(f"{path}: is a directory")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ProfileError(f"{path}: cannot write: {parent} is not an existing directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stats_section(stats: Any) -> dict[str, Any]:
    """A profile's ``normalization`` section from ``NormalizationStats`` (published keys in order)."""
    data = stats.as_dict()
    order = ("mask", "q01", "q99") + PER_AXIS_KEYS + COUNT_KEYS
    return {k: data[k] for k in order if k in data}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text:  # YAML 1.1 reads 1e-05 as a string
            mantissa, _, exponent = text.partition("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        return '"' + _escaped(value.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} into a profile")


def _escaped(text: str) -> str:
    """``text`` with every character that is not printable as a YAML escape (\\xXX, \\uXXXX, \\UXXXXXXXX)."""
    def escape(c: str) -> str:
        code = ord(c)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return "".join(c if c.isprintable() else escape(c) for c in text)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
