"""ament_python package setup for magma_ros (colcon and pip)."""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "magma_ros"
# colcon --symlink-install runs a symlink to this file from build/: resolve it to the source tree.
HERE = Path(__file__).resolve().parent


def share_files(folder: str) -> list[tuple[str, list[str]]]:
    """Every file under ``folder``, grouped by directory, for share/<package>/."""
    groups: dict[str, list[str]] = {}
    for path in sorted((HERE / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(HERE)
            groups.setdefault(str(Path("share") / PACKAGE / rel.parent), []).append(str(rel))
    return sorted(groups.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Vision-language-action control for robot arms with Microsoft Magma",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*", "bench", "bench.*"]),
    package_data={PACKAGE: ["**/*.npz", "**/*.json", "**/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        *share_files("launch"),
        *share_files("config"),
    ],
    install_requires=[
        "numpy>=1.21",
        "PyYAML>=5.4",
        "tokenizers>=0.15",
        "httpx>=0.24",
        "pillow>=9",  # JPEG encoding for the openai backend
        "scipy>=1.8",  # rotation conventions (scipy.spatial.transform); Humble ships 1.8
        "tqdm>=4.57",  # the tools' progress bar; Humble ships 4.57
    ],
    extras_require={
        "magma": [  # the native Magma implementation (tested on transformers 4.55.4 and 5.24.0)
            "torch>=2.1", "transformers>=4.49", "safetensors>=0.4", "accelerate>=0.26",
        ],
        "finetune": ["peft>=0.13", "torch>=2.1", "transformers>=4.49", "safetensors>=0.4", "rosbags>=0.10",
                     "matplotlib>=3.5"],  # magma-ros finetune (with the magma extra's runtime)
        "serve": ["fastapi>=0.110", "uvicorn>=0.27", "pillow>=9"],
        "eval": ["rosbags>=0.10", "matplotlib>=3.5"],
        "sim": ["pybullet>=3.2", "matplotlib>=3.5", "pillow>=9"],
        "compressed": ["opencv-python-headless>=4.5"],
        "fleet": ["ray[serve]>=2.40"],  # magma-ros fleet: replicas on Ray Serve (with the serve and magma extras)
        "test": ["pytest"],  # colcon test runs pytest (not unittest) when pytest is a declared test dependency
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "magma-ros = magma_ros.cli:main",
            "magma_node = magma_ros.ros.node_main:main",
            "magma_sim = magma_ros.sim.sim_main:main",
            "interbotix_gripper_bridge = magma_ros.ros.gripper_bridge:main",
        ],
    },
)
