"""`pip install .` lays out an ament package: resource index, share/ with launch/ and config/."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from colcon_support import COPY_IGNORE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prefix")
    # from a copy: building in the source tree writes build/ there while other workers read it
    source = tmp_path_factory.mktemp("source") / "magma_ros"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--ignore-installed",
         "--prefix", str(root), str(source)],
        check=True, capture_output=True, cwd=root,
    )
    return root


def test_share_directory_and_ament_index(prefix):
    share = prefix / "share" / "magma_ros"
    assert (prefix / "share/ament_index/resource_index/packages/magma_ros").is_file()
    assert (share / "package.xml").is_file()
    assert {"bridge_orig.yaml", "google_robot.yaml"} <= {p.name for p in (share / "config/robots").iterdir()}
    assert any(share.glob("launch/*.launch.py"))


def test_ament_index_python_finds_it_and_profiles_load(prefix):
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    code = (
        "from ament_index_python.packages import get_package_share_directory as g;"
        "import magma_ros.actions as a, os;"
        "d = g('magma_ros'); print(d);"
        "print(a.profiles.resolve_profile_path('bridge_orig'));"
        "print(os.path.dirname(a.__file__))"
    )
    env = {**os.environ, "AMENT_PREFIX_PATH": str(prefix), "PYTHONPATH": site}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=prefix,
                         check=True).stdout.split()
    assert out[0] == str(prefix / "share" / "magma_ros")
    assert out[1] == str(prefix / "share/magma_ros/config/robots/bridge_orig.yaml")
    assert out[2].startswith(site)


def test_console_scripts_land_on_the_venv_path(prefix):
    for name in ("magma-ros", "magma_node", "magma_sim"):
        assert (prefix / "bin" / name).is_file(), name
