"""The shipped magma_node parameters file (config/magma_node.yaml) and the parameters named in docs/node.md.
The launch files themselves are run under upstream launch in test_launch_files.py."""
from __future__ import annotations

from pathlib import Path

import yaml

from magma_ros.ros.settings import build_settings, default_values

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / "config" / "magma_node.yaml"


def test_params_file_lists_every_parameter_with_its_default_and_a_comment():
    data = yaml.safe_load(PARAMS_FILE.read_text())
    values = data["/**"]["ros__parameters"]
    defaults = default_values()
    assert set(values) == set(defaults), set(values) ^ set(defaults)
    for name, default in defaults.items():
        assert values[name] == default, name
    lines = {line.split(":")[0].strip(): line for line in PARAMS_FILE.read_text().splitlines()
             if ":" in line and not line.lstrip().startswith("#")}
    for name in defaults:
        assert "#" in lines[name], f"{name} has no comment"
    build_settings(values)  # and it validates


def test_node_page_names_every_parameter():
    """The table with defaults is generated (docs/reference/node_parameters.md); the node's page
    must still name every parameter in its Parameters section."""
    page = (REPO / "docs" / "node.md").read_text()
    section = page[page.index("\n## Parameters\n"):]
    section = section[:section.index("\n## ", 1)]
    for name in default_values():
        assert f"`{name}`" in section, f"{name} missing from the Parameters section of docs/node.md"
