"""Write a synthetic rosbag2 bag shaped like a teleoperation recording: camera images, instructions
(one per episode) and the executed actions, both as Float64MultiArray 7-vectors and as
TwistStamped + gripper Float64. Used by the tests, the benchmark and the documentation.

    python -m magma_ros.eval.sample_bag demo_bag --frames 60 --episodes 2

Frame ``i`` is a solid image whose red and green channels hold ``i % 256`` and ``i // 256`` (see
``frame_index``), so a test backend can tell which frame it was given.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..actions.gripper import GripperConverter
from ..actions.profiles import RobotProfile, load_profile
from ..actions.twist import delta_to_twist
from ..interface import IMAGE, INSTRUCTION, TELEOP_ACTION, TELEOP_GRIPPER, TELEOP_TWIST
from .bag import STORAGES, open_writer, typestore

# the bag's topics, in the root namespace as a recording has them
IMAGE_TOPIC = IMAGE.absolute
INSTRUCTION_TOPIC = INSTRUCTION.absolute
ACTION_TOPIC = TELEOP_ACTION.absolute
TWIST_TOPIC = TELEOP_TWIST.absolute
GRIPPER_TOPIC = TELEOP_GRIPPER.absolute
START_NS = 1_700_000_000_000_000_000
ACTION_DELAY_NS = 20_000_000  # actions are recorded 20 ms after their image


@dataclass(frozen=True)
class SampleSpec:
    """Shape of a synthetic bag."""

    frames: int = 60
    episodes: int = 2
    width: int = 64
    height: int = 64
    rate_hz: float = 5.0
    robot: str = "bridge_orig"
    storage: str = "mcap"
    twist: bool = True  # also write TwistStamped + gripper Float64


def instruction_for(episode: int) -> str:
    """The instruction of episode ``episode``."""
    return f"put the block in bowl {episode}"


def ground_truth(index: int, profile: RobotProfile) -> np.ndarray:
    """The recorded action of frame ``index``: smooth arm motion inside q01..q99 and a gripper that
    closes (0.0) for ten frames out of every twenty."""
    q01, q99 = np.asarray(profile.stats.q01), np.asarray(profile.stats.q99)
    phase = 2.0 * np.pi * index / 25.0 + np.arange(7)
    arm = q01 + (q99 - q01) * (0.5 + 0.4 * np.sin(phase))
    arm[6] = 0.0 if (index // 10) % 2 else 1.0
    return arm


def frame_index(image: np.ndarray) -> int:
    """Recover the frame index written into a sample image."""
    return int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])


def frame_time_ns(index: int, rate_hz: float) -> int:
    """Bag time of frame ``index``."""
    return START_NS + int(round(index * 1e9 / rate_hz))


def write_sample_bag(path: str | Path, spec: SampleSpec = SampleSpec()) -> Path:
    """Write the bag and return its path."""
    profile = load_profile(spec.robot)
    ts = typestore()
    types = ts.types
    per_episode = max(1, -(-spec.frames // max(spec.episodes, 1)))
    gripper = GripperConverter(profile.gripper)
    with open_writer(path, spec.storage) as writer:
        conn = {
            "image": writer.add_connection(IMAGE_TOPIC, IMAGE.type, typestore=ts),
            "instruction": writer.add_connection(INSTRUCTION_TOPIC, INSTRUCTION.type, typestore=ts),
            "action": writer.add_connection(ACTION_TOPIC, TELEOP_ACTION.type, typestore=ts),
        }
        if spec.twist:
            conn["twist"] = writer.add_connection(TWIST_TOPIC, TELEOP_TWIST.type, typestore=ts)
            conn["gripper"] = writer.add_connection(GRIPPER_TOPIC, TELEOP_GRIPPER.type, typestore=ts)

        def write(key: str, t_ns: int, msg: Any) -> None:
            writer.write(conn[key], t_ns, ts.serialize_cdr(msg, conn[key].msgtype))

        pixels = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
        for i in range(spec.frames):
            t = frame_time_ns(i, spec.rate_hz)
            if i % per_episode == 0:
                gripper.reset()
                write("instruction", t - 1_000_000,
                      types["std_msgs/msg/String"](data=instruction_for(i // per_episode)))
            pixels[..., 0], pixels[..., 1], pixels[..., 2] = i % 256, (i // 256) % 256, 128
            write("image", t, types["sensor_msgs/msg/Image"](
                header=_header(types, t, "camera"), height=spec.height, width=spec.width, encoding="rgb8",
                is_bigendian=0, step=spec.width * 3, data=pixels.reshape(-1).copy()))
            action = ground_truth(i, profile)
            t_action = t + ACTION_DELAY_NS
            write("action", t_action, _float64_array(types, action))
            if spec.twist:
                twist = delta_to_twist(action, profile.control_period_s)
                write("twist", t_action, types["geometry_msgs/msg/TwistStamped"](
                    header=_header(types, t_action, profile.base_frame),
                    twist=types["geometry_msgs/msg/Twist"](
                        linear=types["geometry_msgs/msg/Vector3"](*map(float, twist.linear)),
                        angular=types["geometry_msgs/msg/Vector3"](*map(float, twist.angular)))))
                write("gripper", t_action, types["std_msgs/msg/Float64"](data=float(gripper(action[6]))))
    return Path(path)


def _header(types: Any, t_ns: int, frame_id: str) -> Any:
    stamp = types["builtin_interfaces/msg/Time"](sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _float64_array(types: Any, values: np.ndarray) -> Any:
    layout = types["std_msgs/msg/MultiArrayLayout"](
        dim=[types["std_msgs/msg/MultiArrayDimension"](label="action", size=7, stride=7)], data_offset=0)
    return types["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.asarray(values, dtype=np.float64))


def main(argv: list[str] | None = None) -> int:
    """Command line: write one sample bag."""
    parser = argparse.ArgumentParser(prog="python -m magma_ros.eval.sample_bag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="bag directory to create")
    defaults = SampleSpec()
    parser.add_argument("--frames", type=int, default=defaults.frames)
    parser.add_argument("--episodes", type=int, default=defaults.episodes)
    parser.add_argument("--size", type=int, default=defaults.width, help="image width and height (pixels)")
    parser.add_argument("--rate", type=float, default=defaults.rate_hz, help="frames per second")
    parser.add_argument("--robot", default=defaults.robot)
    parser.add_argument("--storage", choices=STORAGES, default=defaults.storage)
    args = parser.parse_args(argv)
    spec = SampleSpec(frames=args.frames, episodes=args.episodes, width=args.size, height=args.size,
                      rate_hz=args.rate, robot=args.robot, storage=args.storage)
    print(write_sample_bag(args.path, spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
