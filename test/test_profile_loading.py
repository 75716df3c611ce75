"""One way to load a robot profile: ``actions/profiles.py``'s ``load_profile`` (overrides included);
no other module locates, parses or builds a profile from raw YAML."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from magma_ros.actions import ProfileError, builtin_profile_names, builtin_profiles, load_profile
from magma_ros.actions.profile_writer import write_profile_variant
from magma_ros.actions.profiles import profile_data
from magma_ros.demo import magma_sim_profile

REPO = Path(__file__).resolve().parents[1]
LOADER = REPO / "magma_ros" / "actions" / "profiles.py"
SCANNED = ("magma_ros", "bench", "tools")
# Only the loader may locate profile files, or turn a raw mapping into a RobotProfile.
LOADER_INTERNALS = {"RobotProfile", "profile_from_mapping", "resolve_profile_path", "profile_dirs", "_parse_yaml"}
YAML_READERS = {"safe_load", "load", "full_load", "unsafe_load", "safe_load_all", "load_all"}


def second_loaders(source: str, where: str) -> list[str]:
    """Lines of ``source`` that load or build a robot profile without ``load_profile``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name == "RobotProfile":
                found.append(f"{where}:{node.lineno}: builds RobotProfile(...) itself")
            elif name in YAML_READERS and _mentions_profile(node):
                found.append(f"{where}:{node.lineno}: reads profile YAML with yaml.{name}")
        name = _name(node) if isinstance(node, (ast.Name, ast.Attribute, ast.alias)) else None
        if isinstance(node, ast.alias):
            name = node.name.rsplit(".", 1)[-1]
        if name in LOADER_INTERNALS - {"RobotProfile"}:
            found.append(f"{where}:{node.lineno if hasattr(node, 'lineno') else '?'}: uses {name}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "config/robots" in node.value:
            found.append(f"{where}:{node.lineno}: names the profile directory")
    return found


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _mentions_profile(call: ast.Call) -> bool:
    words = [_name(n) or "" for n in ast.walk(call) if isinstance(n, (ast.Name, ast.Attribute))]
    strings = [n.value for n in ast.walk(call) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return (any("profile" in w.lower() or "robot" in w.lower() or w == "source" for w in words)
            or any(s in builtin_profile_names() or "robots" in s for s in strings))


def test_only_profiles_py_loads_profiles():
    found = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            if path != LOADER:
                found += second_loaders(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not found, "load profiles with magma_ros.actions.profiles.load_profile only:\n" + "\n".join(found)


@pytest.mark.parametrize("code", [
    'bridge = yaml.safe_load(resolve_profile_path("bridge_orig").read_text(encoding="utf-8"))',
    'data = yaml.safe_load(open(profile.source))',
    'data = yaml.safe_load(Path("config/robots/wx250s.yaml").read_text())',
    'p = RobotProfile(**fields)',
    'from magma_ros.actions import profile_from_mapping',
    'p = profiles.profile_from_mapping(data, "x")',
])
def test_the_scan_catches_a_second_loader(code):
    assert second_loaders(code, "x.py")


def test_the_scan_leaves_other_yaml_alone():
    assert not second_loaders('data = yaml.safe_load(path.read_text(encoding="utf-8"))\n'
                              'profile = load_profile(args.robot)', "x.py")


def test_builtin_profiles_are_every_builtin_name():
    profiles = builtin_profiles()
    assert list(profiles) == builtin_profile_names()
    assert profiles["bridge_orig"] == load_profile("bridge_orig")


def test_overrides_replace_top_level_keys():
    sim = load_profile("sim_panda")
    sim_data, _ = profile_data("sim_panda")
    profile = load_profile("bridge_orig", {"name": "mine", "workspace": sim_data["workspace"]})
    bridge = load_profile("bridge_orig")
    assert (profile.name, profile.workspace, profile.stats) == ("mine", sim.workspace, bridge.stats)
    assert profile.source.startswith(bridge.source) and "overriding name, workspace" in profile.source
    assert load_profile("bridge_orig", {}) == bridge


def test_override_errors_name_the_file_and_key():
    source = load_profile("bridge_orig").source
    with pytest.raises(ProfileError) as unknown:
        load_profile("bridge_orig", {"base_fram": "world"})
    assert str(unknown.value).startswith(f"{source}: override 'base_fram': unknown key")
    with pytest.raises(ProfileError) as bad:
        load_profile("bridge_orig", {"workspace": {"min": [0, 0, 0], "max": [1, 1, -1]}})
    assert str(bad.value) == f"{source} (overriding workspace): workspace.min[2]: must be below workspace.max[2]"


def test_write_profile_variant_writes_nothing_invalid(tmp_path):
    path = tmp_path / "variant.yaml"
    with pytest.raises(ProfileError, match=r"control_rate_hz: must be positive"):
        write_profile_variant(path, "bridge_orig", {"control_rate_hz": 0}, "bad")
    assert not path.exists()
    written = write_profile_variant(path, "bridge_orig", {"name": "variant"}, "a variant")
    assert written == load_profile(path) and written.name == "variant"
    assert path.read_text(encoding="utf-8").startswith("# a variant\n")


def test_demo_magma_profile_is_bridge_on_the_simulated_arm(tmp_path):
    profile = load_profile(magma_sim_profile(tmp_path))
    bridge, sim = load_profile("bridge_orig"), load_profile("sim_panda")
    assert profile.name == "sim_panda_bridge"
    assert (profile.base_frame, profile.workspace) == (sim.base_frame, sim.workspace)
    assert (profile.stats, profile.limits, profile.gripper, profile.control_rate_hz, profile.prompt_template) == (
        bridge.stats, bridge.limits, bridge.gripper, bridge.control_rate_hz, bridge.prompt_template)
