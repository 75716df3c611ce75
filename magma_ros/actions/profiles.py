"""Robot profiles: one YAML per robot (normalization, rates, frames, gripper, limits, prompt)."""
from __future__ import annotations

import math
import string
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import one_line
from ..finite import finite_float
from .errors import ProfileError, StatsError
from .gripper import GripperConfig
from .stats import NormalizationStats

PACKAGE = "magma_ros"
PROFILE_KEYS = {
    "name", "description", "control_rate_hz", "base_frame", "image_size", "prompt_template",
    "normalization", "gripper", "limits", "workspace",
}
REQUIRED_KEYS = ("name", "control_rate_hz", "base_frame", "normalization", "gripper", "limits", "workspace")
DEFAULT_PROMPT_TEMPLATE = "What action should the robot take to {instruction}?"
MAX_PROMPT_TEMPLATE_CHARS = 2000  # a prompt is a sentence; 25x the built-in one, far below any context
MAX_FRAME_CHARS = 256             # tf2 frame ids are short names
IMAGE_SIDE_RANGE = (16, 4096)     # pixels per side of the image the model sees


@dataclass(frozen=True)
class StepLimits:
    """Largest end-effector motion allowed in one control step."""

    max_linear_step: float  # metres per step, per axis
    max_angular_step: float  # radians per step, per axis


@dataclass(frozen=True)
class Workspace:
    """Axis-aligned box the end effector must stay in (metres, base frame)."""

    min: tuple[float, float, float]
    max: tuple[float, float, float]


@dataclass(frozen=True)
class RobotProfile:
    """Everything the node needs to know about one robot and the data its model was trained on."""

    name: str
    description: str
    control_rate_hz: float
    base_frame: str
    image_size: tuple[int, int]  # width, height
    prompt_template: str
    stats: NormalizationStats
    gripper: GripperConfig
    limits: StepLimits
    workspace: Workspace
    source: str

    @property
    def control_period_s(self) -> float:
        """Seconds per control step (1 / control_rate_hz)."""
        return 1.0 / self.control_rate_hz

    def prompt(self, instruction: str) -> str:
        """The model prompt for ``instruction``."""
        return self.prompt_template.format(instruction=instruction)


def profile_dirs() -> list[Path]:
    """Where built-in profiles are looked for, in order: the ament index, this venv's share/,
    and the source checkout."""
    dirs = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            dirs.append(Path(get_package_share_directory(PACKAGE)) / "config" / "robots")
        except (PackageNotFoundError, OSError):  # not indexed, or AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    dirs.append(Path(sys.prefix) / "share" / PACKAGE / "config" / "robots")
    dirs.append(Path(__file__).resolve().parents[2] / "config" / "robots")
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def builtin_profile_names() -> list[str]:
    """Names of the profiles shipped with the package."""
    names: set[str] = set()
    for d in profile_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A built-in profile name or a path to a YAML file -> the file."""
    text = str(name_or_path)
    if not text:
        raise ProfileError("robot profile: empty name")
    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise ProfileError(f"{path}: robot profile file not found")
        return path
    for d in profile_dirs():
        candidate = d / f"{text}.yaml"
        if candidate.is_file():
            return candidate
    known = ", ".join(builtin_profile_names()) or "none found"
    raise ProfileError(f"unknown robot {text!r} (built-in: {known}; or give a path to a profile YAML)")


def load_profile(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> RobotProfile:
    """The one way to load a robot profile: by built-in name or path to a YAML file, validated;
    ``overrides`` replace whole top-level keys first. Errors name the file and the key."""
    return profile_data(name_or_path, overrides)[1]


def builtin_profiles() -> dict[str, RobotProfile]:
    """Every built-in profile, validated, by its built-in name."""
    return {name: load_profile(name) for name in builtin_profile_names()}


def profile_data(name_or_path: str | Path,
                 overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], RobotProfile]:
    """A profile's top-level mapping as read (``overrides`` replacing whole top-level keys) and the
    validated profile it makes, e.g. to write a variant of a built-in profile. Errors name the file
    (and the overridden keys) and the key."""
    path = resolve_profile_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    data = _parse_yaml(text, str(path))
    if not overrides:
        return data, profile_from_mapping(data, str(path))
    if not isinstance(data, Mapping):
        raise ProfileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = sorted(set(overrides) - PROFILE_KEYS, key=str)
    if unknown:
        raise ProfileError(f"{path}: override {unknown[0]!r}: unknown key (known: {', '.join(sorted(PROFILE_KEYS))})")
    merged = {**data, **overrides}
    return merged, profile_from_mapping(merged, f"{path} (overriding {', '.join(map(str, overrides))})")


def parse_profile(text: str, source: str) -> tuple[Any, RobotProfile]:
    """Profile YAML ``text`` -> the mapping it holds and the validated profile; ``source`` names it in errors."""
    data = _parse_yaml(text, source)
    return data, profile_from_mapping(data, source)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {one_line(exc)[:300]}") from None
    except RecursionError:
        raise ProfileError(f"{source}: YAML nested too deeply to be a robot profile") from None


def profile_from_mapping(data: Any, source: str) -> RobotProfile:
    """Validate a parsed profile; ``source`` (usually the file path) prefixes every error."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = sorted(set(data) - PROFILE_KEYS)
    if unknown:
        raise ProfileError(f"{source}: {unknown[0]}: unknown key (known: {', '.join(sorted(PROFILE_KEYS))})")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ProfileError(f"{source}: {key}: required key missing")
    try:
        stats = NormalizationStats.from_mapping(data["normalization"], "normalization")
    except StatsError as exc:
        raise ProfileError(f"{source}: {exc}") from None
    prompt = data.get("prompt_template", DEFAULT_PROMPT_TEMPLATE)
    problem = prompt_template_problem(prompt)
    if problem is not None:
        raise ProfileError(f"{source}: prompt_template: {problem}")
    return RobotProfile(
        name=_string(data, "name", source),
        description=str(data.get("description", "")),
        control_rate_hz=_positive(data, "control_rate_hz", source),
        base_frame=_frame(data, "base_frame", source),
        image_size=_image_size(data.get("image_size", [256, 256]), source),
        prompt_template=prompt,
        stats=stats,
        gripper=GripperConfig.from_mapping(data["gripper"], f"{source}: gripper"),
        limits=_limits(data["limits"], source),
        workspace=_workspace(data["workspace"], source),
        source=source,
    )


def _string(data: Mapping, key: str, source: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"{source}: {key}: expected a non-empty string, got {value!r}")
    return value


def prompt_template_problem(template: Any) -> str | None:
    """None when ``template`` is a usable prompt template, else what is wrong with it: a string of at
    most ``MAX_PROMPT_TEMPLATE_CHARS`` characters holding ``{instruction}`` exactly once and no other
    replacement field, without format spec, conversion, attribute or index (``{{`` and ``}}`` are
    literal braces). Parsed, never formatted: a spec such as ``:>2000000000`` costs nothing here."""
    if not isinstance(template, str):
        return f"must be a string containing {{instruction}}, got {type(template).__name__}"
    if len(template) > MAX_PROMPT_TEMPLATE_CHARS:
        return f"{len(template)} characters, more than the limit of {MAX_PROMPT_TEMPLATE_CHARS}"
    fields = 0
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if name != "instruction" or spec or conversion is not None:
                shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                return (f"only {{instruction}} may be substituted, without format spec, conversion, attribute "
                        f"or index; got {shown[:60]!r} (write {{{{ and }}}} for literal braces)")
            fields += 1
    except ValueError as exc:  # unbalanced braces
        return f"{exc} (write {{{{ and }}}} for literal braces)"
    if fields != 1:
        return f"must be a string containing {{instruction}} exactly once, found it {fields} times"
    return None


def _frame(data: Mapping, key: str, source: str) -> str:
    """A tf2 frame id: non-empty, at most ``MAX_FRAME_CHARS``, no leading ``/``, no whitespace or
    control characters (tf2 rejects such frames)."""
    value = _string(data, key, source)
    if len(value) > MAX_FRAME_CHARS:
        raise ProfileError(f"{source}: {key}: {len(value)} characters, more than {MAX_FRAME_CHARS}")
    if value.startswith("/"):
        raise ProfileError(f"{source}: {key}: a tf2 frame id has no leading '/', got {value[:60]!r}")
    bad = next((c for c in value if c.isspace() or unicodedata.category(c).startswith("C")), None)
    if bad is not None:
        raise ProfileError(f"{source}: {key}: whitespace or control character {bad!r} in {value[:60]!r}")
    return value


def _positive(data: Mapping, key: str, source: str) -> float:
    value = finite_float(data[key], f"{source}: {key}", ProfileError)
    if value <= 0 or not math.isfinite(1.0 / value):
        raise ProfileError(f"{source}: {key}: must be positive (and its inverse finite), got {value!r}")
    return value


def _image_size(value: Any, source: str) -> tuple[int, int]:
    low, high = IMAGE_SIDE_RANGE
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ProfileError(f"{source}: image_size: expected [width, height] as two integers, got {value!r}"[:300])
    if not all(low <= v <= high for v in value):
        raise ProfileError(f"{source}: image_size: each side must be {low}..{high} pixels, got {list(value)}"[:300])
    return int(value[0]), int(value[1])


def _limits(value: Any, source: str) -> StepLimits:
    if not isinstance(value, Mapping):
        raise ProfileError(f"{source}: limits: expected a mapping, got {type(value).__name__}")
    out = {}
    for key in ("max_linear_step", "max_angular_step"):
        if key not in value:
            raise ProfileError(f"{source}: limits.{key}: required key missing")
        out[key] = finite_float(value[key], f"{source}: limits.{key}", ProfileError)
        if out[key] <= 0:
            raise ProfileError(f"{source}: limits.{key}: must be positive, got {out[key]!r}")
    extra = sorted(set(value) - set(out))
    if extra:
        raise ProfileError(f"{source}: limits.{extra[0]}: unknown key")
    return StepLimits(**out)


def _workspace(value: Any, source: str) -> Workspace:
    if not isinstance(value, Mapping):
        raise ProfileError(f"{source}: workspace: expected a mapping with min and max, got {type(value).__name__}")
    corners = {}
    for key in ("min", "max"):
        v = value.get(key)
        if not isinstance(v, (list, tuple)) or len(v) != 3:
            raise ProfileError(f"{source}: workspace.{key}: expected [x, y, z], got {v!r}")
        corners[key] = tuple(finite_float(x, f"{source}: workspace.{key}[{i}]", ProfileError)
                             for i, x in enumerate(v))
    for i in range(3):
        if corners["min"][i] >= corners["max"][i]:
            raise ProfileError(f"{source}: workspace.min[{i}]: must be below workspace.max[{i}]")
    extra = sorted(set(value) - {"min", "max"})
    if extra:
        raise ProfileError(f"{source}: workspace.{extra[0]}: unknown key")
    return Workspace(min=corners["min"], max=corners["max"])
