"""The core stays importable without rclpy or torch (a robot without a GPU or a ROS-free tool)."""
from __future__ import annotations

import subprocess
import sys

import pytest

CORE_MODULES = [
    "magma_ros.actions", "magma_ros.safety", "magma_ros.policy", "magma_ros.policy.fixed",
    "magma_ros.policy.openai_backend", "magma_ros.policy.magma", "magma_ros.policy.demo", "magma_ros.cli",
]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_imports_with_rclpy_and_torch_blocked(module):
    code = (
        "import sys\n"
        "for name in ('rclpy', 'torch', 'transformers'):\n"
        "    sys.modules[name] = None  # any import of these now raises ImportError\n"
        f"import {module}\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_cli_help_lists_every_command_without_heavy_imports():
    code = (
        "import sys\n"
        "for name in ('rclpy', 'torch', 'transformers', 'fastapi', 'rosbags', 'pybullet'):\n"
        "    sys.modules[name] = None\n"
        "from magma_ros.cli import main\n"
        "main(['--help'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "decode" in result.stdout
