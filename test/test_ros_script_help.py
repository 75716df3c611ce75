"""The ROS console scripts explain themselves and stop cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from magma_ros.policy.config import BACKEND_OPTIONS
from magma_ros.ros.settings import NODE_PARAMETERS
from magma_ros.sim.parameters import SIM_PARAMETERS


@pytest.mark.colcon_smoke
@pytest.mark.parametrize("script, names", [
    ("magma_node", [p.name for p in NODE_PARAMETERS] + [o.name for o in BACKEND_OPTIONS]),
    ("magma_sim", [o.name for o in SIM_PARAMETERS]),
])
def test_help_lists_every_parameter_and_starts_nothing(console_script, script, names):
    result = subprocess.run([console_script(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script} [--ros-args")
    for name in names:
        assert f"\n  {name} (" in result.stdout, name
    assert "[INFO]" not in result.stdout + result.stderr  # no node was started


def test_magma_sim_exits_cleanly_on_sigterm(console_script):
    proc = subprocess.Popen([console_script("magma_sim"), "--ros-args", "-p", "camera_rate_hz:=30.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 60
    output = ""
    while "magma_sim ready" not in output and time.monotonic() < deadline:
        output += proc.stdout.readline()
    assert "magma_sim ready" in output, output
    time.sleep(1.0)  # publishing camera frames
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output + rest
    assert "Traceback" not in rest, rest


@pytest.mark.parametrize("value, message", [
    ("-1.0", "real_time_factor out of range"),  # rejected by the parameter's declared range
    ("0.0", "parameter real_time_factor must be > 0, got 0.0"),  # in range, rejected by the settings check
])
def test_magma_sim_rejects_a_bad_parameter_in_one_line(console_script, value, message):
    result = subprocess.run([console_script("magma_sim"), "--ros-args", "-p", f"real_time_factor:={value}"],
                            capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("magma_sim: error: ") and message in result.stderr, result.stderr
