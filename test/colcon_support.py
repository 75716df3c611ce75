"""A colcon workspace with a copy of this repository, for the colcon and launch tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "build_*", "install", "install_*", "log",
                                     "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "out")


def colcon_command() -> str:
    path = Path(sys.executable).parent / "colcon"
    found = str(path) if path.exists() else shutil.which("colcon")
    if found is None:
        pytest.fail("colcon not found next to this Python or on PATH (make install installs colcon-common-extensions)")
    return found


def in_workspace(ws: Path, command: str, setup: str = "", timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``command`` in bash in ``ws`` after sourcing ``setup`` (an install's setup.bash) if given; must succeed."""
    script = (f". {setup} && " if setup else "") + command
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    result = subprocess.run(["bash", "-c", script], cwd=ws, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f"{command}\n--- stdout\n{result.stdout[-4000:]}"
                                    f"\n--- stderr\n{result.stderr[-4000:]}")
    return result


def new_workspace(root: Path) -> Path:
    """``root`` with src/magma_ros, a copy of this repository's files."""
    shutil.copytree(REPO, root / "src" / "magma_ros", ignore=COPY_IGNORE)
    return root


def build(ws: Path, *options: str) -> None:
    """``colcon build`` in ``ws`` with ``options`` (e.g. --symlink-install, --install-base ...)."""
    in_workspace(ws, " ".join([colcon_command(), "build", "--event-handlers", "console_direct-", *options]))
