"""Where the tests find this package's executables: the install prefix first, then the venv.

Under ``colcon test`` (after sourcing the workspace) the ament index names the install prefix and
the scripts are in ``<prefix>/lib/magma_ros``; under ``make test`` (a pip install into the venv)
they are console scripts next to the running Python.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "magma_ros"


def executable(name: str) -> str:
    """Path of ``name`` from the first ament prefix that has ``lib/magma_ros/<name>``, else the venv's bin/."""
    for prefix in _package_prefixes():
        path = prefix / "lib" / PACKAGE / name
        if os.access(path, os.X_OK):
            return str(path)
    path = Path(sys.executable).parent / name
    if os.access(path, os.X_OK):
        return str(path)
    searched = [str(p / "lib" / PACKAGE) for p in _package_prefixes()] + [str(path.parent)]
    raise FileNotFoundError(f"executable {name!r} of {PACKAGE} not found in {', '.join(searched)} "
                            "(run make install, or colcon build and source install/setup.bash)")


def _package_prefixes() -> list[Path]:
    """Prefixes on AMENT_PREFIX_PATH whose ament index registers this package, in order."""
    prefixes = []
    for entry in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if entry and (Path(entry) / "share/ament_index/resource_index/packages" / PACKAGE).is_file():
            prefixes.append(Path(entry))
    return prefixes
