"""Every executable that takes ``--ros-args`` turns what rcl rejects at start-up into one line on
stderr and exit status 2, naming the likely cause (issue 26): rcl's own error line and rclpy's
traceback stay out of the user's way."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from magma_ros.eval.sample_bag import SampleSpec, write_sample_bag

pytestmark = pytest.mark.ros

MIXED_LIST = "fixed_action:=[0.0,0,0,0,0,0,1.0]"  # docs/install.md's example before the fix
# prog as it names itself, and its command line before --ros-args ({bag}, {out}: per test)
EXECUTABLES = {
    "magma_node": ["magma_node"],
    "magma_sim": ["magma_sim"],
    "interbotix_gripper_bridge": ["interbotix_gripper_bridge"],
    "magma-ros record": ["magma-ros", "record", "--out", "{out}", "--duration", "1"],
    "magma-ros replay": ["magma-ros", "replay", "{bag}", "--out", "{out}", "--wait-node", "1"],
}
# rejected by rclpy.init (the parser), by node creation (namespace), by a parameter declaration (type)
FAILURES = {
    "mixed list": (["-p", MIXED_LIST], "Sequence should be of same type", "write every element as a float"),
    "namespace with a trailing slash": (["-r", "__ns:=/robot1/"], "invalid node namespace",
                                        "without a trailing slash, e.g. -r __ns:=/robot1"),
    "integer for a bool": (["-p", "use_sim_time:=1"], "expecting type 'BOOL'", "true or false"),
}


@pytest.fixture(scope="module")
def source_bag(tmp_path_factory) -> Path:
    return write_sample_bag(tmp_path_factory.mktemp("ros_args") / "good", SampleSpec(frames=4, episodes=1))


def run(console_script, prog: str, ros_args: list[str], bag: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    name, *rest = EXECUTABLES[prog]
    argv = [console_script(name)] + [a.format(bag=bag, out=tmp_path / "out") for a in rest]
    return subprocess.run([*argv, "--ros-args", *ros_args], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
@pytest.mark.parametrize("prog", EXECUTABLES, ids=list(EXECUTABLES))
def test_rejected_ros_args_are_one_line_and_exit_2(console_script, source_bag, tmp_path, prog, failure):
    ros_args, rcl_says, cause = FAILURES[failure]
    result = run(console_script, prog, ros_args, source_bag, tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1, result.stderr  # neither rcl's own "[ERROR] ... [rcl]" line nor a traceback
    assert lines[0].startswith(f"{prog}: error: --ros-args: "), lines[0]
    assert rcl_says in lines[0] and cause in lines[0], lines[0]
    assert ", at /" not in lines[0]  # rcl's C source locations are dropped
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize("override, cause", [
    ("robot:=5", "expecting type 'STRING'"),  # one of the node's own parameters
    ("control_rate_hz:=5", "write a float parameter with a decimal point"),
    ("fixed_action:=[0,0,0,0,0,0,1]", "write every element as a float"),  # integers only: parsed, then refused
])
def test_magma_node_names_the_parameter_of_the_wrong_type(console_script, source_bag, tmp_path, override, cause):
    result = run(console_script, "magma_node", ["-p", override], source_bag, tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("magma_node: error: --ros-args: ") and cause in lines[0], lines[0]
    assert override.partition(":=")[0] in lines[0]
