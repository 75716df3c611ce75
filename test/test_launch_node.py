"""The shipped magma_node parameters file (config/magma_node.yaml) and the README's parameter table.
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


def test_docs_parameter_table_lists_every_parameter_with_its_default():
    readme = (REPO / "README.md").read_text()
    node_part = readme[readme.index("\n## magma_node\n"):]
    table = node_part[node_part.index("\n### Parameters\n"):]
    table = table[:table.index("\n### ", 1)]
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines() if line.startswith("| `")}
    for name, default in default_values().items():
        assert name in rows, f"{name} missing from the README's magma_node parameter table"
        shown = "[]" if isinstance(default, list) else ('""' if default == "" else
                                                        str(default).lower() if isinstance(default, bool) else str(default))
        assert f"`{shown}`" in rows[name], (name, rows[name])
