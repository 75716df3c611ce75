"""The tests find executables in an ament install prefix first and in the venv otherwise."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from executables import executable


def fake_prefix(root: Path, names: list[str], registered: bool = True) -> Path:
    if registered:
        index = root / "share/ament_index/resource_index/packages"
        index.mkdir(parents=True)
        (index / "magma_ros").write_text("")
    lib = root / "lib/magma_ros"
    lib.mkdir(parents=True)
    for name in names:
        (lib / name).write_text("#!/bin/sh\n")
        (lib / name).chmod(0o755)
    return root


@pytest.mark.colcon_smoke
def test_install_prefix_wins_over_the_venv(tmp_path, monkeypatch):
    first = fake_prefix(tmp_path / "a", ["magma_sim"])
    second = fake_prefix(tmp_path / "b", ["magma_node", "magma_sim"])
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join([str(first), str(second)]))
    assert executable("magma_node") == str(second / "lib/magma_ros/magma_node")
    assert executable("magma_sim") == str(first / "lib/magma_ros/magma_sim")


@pytest.mark.colcon_smoke
def test_unregistered_prefix_is_ignored_and_the_venv_is_the_fallback(tmp_path, monkeypatch):
    stray = fake_prefix(tmp_path / "stray", ["magma_node"], registered=False)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(stray))
    venv_script = Path(sys.executable).parent / "magma_node"
    if not venv_script.exists():
        pytest.skip("magma_node is not installed next to this Python (a colcon-only environment)")
    assert executable("magma_node") == str(venv_script)


@pytest.mark.colcon_smoke
def test_missing_executable_names_where_it_looked(tmp_path, monkeypatch):
    prefix = fake_prefix(tmp_path / "p", [])
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    with pytest.raises(FileNotFoundError, match=r"'no_such_tool'.*lib/magma_ros.*make install"):
        executable("no_such_tool")
