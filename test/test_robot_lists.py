"""Every place that lists the built-in robots lists exactly the installed profiles (issue 26): the
``robot`` parameter (magma_node --help, config/magma_node.yaml, docs/reference/node_parameters.md)
and ``magma-ros decode --robot``."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from magma_ros.actions.profiles import builtin_profile_names
from magma_ros.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
LISTED = re.compile(r"built-in (?:name|robot profile) \(([^)]*)\)")


def listed_robots(text: str) -> list[str]:
    """The names in the one "built-in name (a, b, ...)" of ``text``."""
    found = LISTED.findall(" ".join(text.split()))
    assert len(found) == 1, f"expected one list of built-in robots in: {text[:300]!r}"
    return [name.strip() for name in found[0].split(",")]


@pytest.fixture(scope="module")
def installed() -> list[str]:
    names = builtin_profile_names()
    assert names == sorted(p.stem for p in (REPO / "config" / "robots").glob("*.yaml")), "installed != shipped"
    assert len(names) >= 4  # bridge_orig, google_robot, sim_panda, wx250s
    return names


def test_robot_parameter_description(installed):
    from magma_ros.ros.settings import NODE_PARAMETERS

    (robot,) = [o for o in NODE_PARAMETERS if o.name == "robot"]
    assert listed_robots(robot.description) == installed


def test_magma_node_help(console_script, installed):
    result = subprocess.run([console_script("magma_node"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entry = re.search(r"\n  robot \(.*?(?=\n  \S)", result.stdout, re.DOTALL)
    assert entry, result.stdout
    assert listed_robots(entry.group(0)) == installed


def test_decode_help(installed):
    (commands,) = [a for a in build_parser()._actions if a.dest == "command"]
    (robot,) = [a for a in commands.choices["decode"]._actions if a.dest == "robot"]
    assert listed_robots(robot.help) == installed


def test_params_file_and_reference_page(installed):
    yaml_line = next(line for line in (REPO / "config" / "magma_node.yaml").read_text().splitlines()
                     if line.strip().startswith("robot:"))
    assert listed_robots(yaml_line) == installed
    row = next(line for line in (REPO / "docs" / "reference" / "node_parameters.md").read_text().splitlines()
               if line.startswith("| `robot` |"))
    assert listed_robots(row) == installed
