"""colcon on a temporary workspace: build, --symlink-install build, and colcon test running pytest
against the installed package (a small marked subset: the full suite runs once in make test)."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from colcon_support import build, colcon_command, in_workspace, new_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One copy of the sources, built twice: install/ (copied) and install_sym/ (--symlink-install)."""
    ws = new_workspace(tmp_path_factory.mktemp("colcon_ws"))
    build(ws)
    build(ws, "--symlink-install", "--build-base", "build_sym", "--install-base", "install_sym")
    return ws


@pytest.mark.parametrize("install", ["install", "install_sym"])
def test_build_installs_an_ament_package_and_runnable_executables(workspace, install):
    prefix = workspace / install / "magma_ros"
    share = prefix / "share" / "magma_ros"
    assert (prefix / "share/ament_index/resource_index/packages/magma_ros").is_file()
    assert (share / "package.xml").is_file() and (share / "config/robots/wx250s.yaml").is_file()
    assert {p.name for p in (share / "launch").iterdir()} >= {"magma_node.launch.py", "servo_robot.launch.py",
                                                              "sim_demo.launch.py"}
    assert (share / "config/servo/wx250s.yaml").is_file()
    for name in ("magma_node", "magma_sim", "magma-ros", "interbotix_gripper_bridge"):
        assert os.access(prefix / "lib" / "magma_ros" / name, os.X_OK), name
    code = ("from ament_index_python.packages import get_package_share_directory as g; "
            "import magma_ros.actions as a; print(g('magma_ros')); print(a.profiles.resolve_profile_path('wx250s'))")
    out = in_workspace(workspace, f"python -c \"{code}\"", setup=f"{install}/setup.bash").stdout.split()
    assert out == [str(share), str(share / "config/robots/wx250s.yaml")]
    help_text = in_workspace(workspace, f"{prefix}/lib/magma_ros/magma_node --help", setup=f"{install}/setup.bash")
    assert help_text.stdout.startswith("usage: magma_node")


def test_symlink_install_links_back_to_the_sources(workspace):
    share = workspace / "install_sym" / "magma_ros" / "share" / "magma_ros"
    launch_file = share / "launch" / "magma_node.launch.py"
    assert launch_file.is_symlink()
    assert launch_file.resolve() == (workspace / "src/magma_ros/launch/magma_node.launch.py").resolve()


def test_colcon_test_runs_pytest_against_the_install(workspace):
    colcon = colcon_command()
    in_workspace(workspace, f"{colcon} test --packages-select magma_ros --return-code-on-test-failure "
                            "--event-handlers console_direct- --pytest-args -m colcon_smoke",
                 setup="install/setup.bash")
    suite = ET.parse(workspace / "build/magma_ros/pytest.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert int(suite.get("tests")) > 0
    assert (int(suite.get("failures")), int(suite.get("errors"))) == (0, 0)
    names = {case.get("name") for case in suite.iter("testcase")}
    assert "test_install_prefix_wins_over_the_venv" in names
    assert any(name.startswith("test_help_lists_every_parameter") for name in names)
    result = in_workspace(workspace, f"{colcon} test-result --test-result-base build/magma_ros")
    assert "0 errors, 0 failures" in result.stdout, result.stdout
