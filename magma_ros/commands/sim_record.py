"""Simulator episodes as rosbag2 bags shaped like a teleoperation recording (``sim-eval --record``).

One bag per episode, written through ``magma-ros record``'s recorder (``eval.recorder.BagRecorder``):
the instruction, then for every control step the camera frame the controller saw and, 10 ms later,
the action it executed in response to that frame, on ``/teleop/action`` (7-vector deltas) and
``/teleop/twist`` + ``/teleop/gripper``. Bag time is the episode's simulated time from a fixed
origin, so a rerun with the same seeds writes the same messages. ``magma-ros eval`` (and
``stats`` / ``finetune``) pair each frame with the first action at or after it: exactly its own.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..actions.rotation import rotvec_to_euler_xyz
from ..interface import IMAGE, INSTRUCTION, TELEOP_ACTION, TELEOP_GRIPPER, TELEOP_TWIST
from ..sim.episode import EpisodeResult

ORIGIN_NS = 1_700_000_000_000_000_000  # bag time of every episode's start
INSTRUCTION_LEAD_NS = 1_000_000  # the instruction precedes the first frame by 1 ms
ACTION_DELAY_NS = 10_000_000  # an action is stamped 10 ms after the frame it answers
CAMERA_FRAME = "camera"


def bag_name(result: EpisodeResult) -> str:
    """``reach_the_red_cube_seed0012``: the instruction's words and the seed."""
    words = "_".join(re.findall(r"[a-z0-9]+", result.instruction.lower()))
    return f"{words}_seed{result.seed:04d}"


def executed_action(linear: np.ndarray, angular: np.ndarray, gripper: float, dt: float) -> np.ndarray:
    """The 7-vector delta (m and rad per step, gripper command) of a twist held for ``dt``."""
    rotation = rotvec_to_euler_xyz(np.asarray(angular, dtype=np.float64) * dt)
    return np.concatenate([np.asarray(linear, dtype=np.float64) * dt, rotation, [gripper]])


class EpisodeBagWriter:
    """Writes each episode handed to it as ``OUT/<bag_name>`` (OUT is created; an existing bag is
    an error, nothing is overwritten). Use as a context manager: it holds an rclpy node."""

    def __init__(self, out_dir: Path, *, control_rate_hz: float, base_frame: str, storage: str = "mcap") -> None:
        from ..eval.bag import typestore

        self.out_dir = Path(out_dir)
        self.dt = 1.0 / control_rate_hz
        self.base_frame = base_frame
        self.storage = storage
        self.written: list[Path] = []
        self._store = typestore()
        self._session: Any = None

    def __enter__(self) -> "EpisodeBagWriter":
        from ..eval.ros_session import RosSession

        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._session = RosSession("magma_sim_recorder", [])
        return self

    def __exit__(self, *exc: object) -> None:
        self._session.close()

    def __call__(self, result: EpisodeResult) -> None:
        """Write ``result`` (recorded with its images) as one bag."""
        from ..eval.recorder import BagRecorder

        if any(r.image is None for r in result.records):
            raise ValueError(f"episode seed {result.seed}: recorded without camera frames")
        path = self.out_dir / bag_name(result)
        recorder = BagRecorder(self._session.node, path, self.storage, [])
        try:
            for topic in (IMAGE, INSTRUCTION, TELEOP_ACTION, TELEOP_TWIST, TELEOP_GRIPPER):
                recorder.add_topic(topic.absolute, topic.type)
            types = self._store.types
            recorder.write(INSTRUCTION.absolute, self._cdr(types["std_msgs/msg/String"](data=result.instruction),
                                                            INSTRUCTION.type), ORIGIN_NS - INSTRUCTION_LEAD_NS)
            for step, record in enumerate(result.records):
                t_frame = ORIGIN_NS + int(round(step * self.dt * 1e9))
                recorder.write(IMAGE.absolute, self._cdr(self._image(record.image, t_frame), IMAGE.type), t_frame)
                t_action = t_frame + ACTION_DELAY_NS
                action = executed_action(record.twist.linear, record.twist.angular, record.gripper, self.dt)
                recorder.write(TELEOP_ACTION.absolute, self._cdr(self._array(action), TELEOP_ACTION.type), t_action)
                recorder.write(TELEOP_TWIST.absolute, self._cdr(self._twist(record.twist, t_action), TELEOP_TWIST.type),
                               t_action)
                gripper = types["std_msgs/msg/Float64"](data=float(record.gripper))
                recorder.write(TELEOP_GRIPPER.absolute, self._cdr(gripper, TELEOP_GRIPPER.type), t_action)
        finally:
            recorder.close()
        self.written.append(path)

    def _cdr(self, msg: Any, msgtype: str) -> bytes:
        return bytes(self._store.serialize_cdr(msg, msgtype))

    def _header(self, t_ns: int, frame_id: str) -> Any:
        types = self._store.types
        stamp = types["builtin_interfaces/msg/Time"](sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)
        return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def _image(self, pixels: np.ndarray, t_ns: int) -> Any:
        height, width = pixels.shape[:2]
        return self._store.types["sensor_msgs/msg/Image"](
            header=self._header(t_ns, CAMERA_FRAME), height=height, width=width, encoding="rgb8", is_bigendian=0,
            step=width * 3, data=np.ascontiguousarray(pixels, dtype=np.uint8).reshape(-1))

    def _array(self, values: np.ndarray) -> Any:
        types = self._store.types
        layout = types["std_msgs/msg/MultiArrayLayout"](
            dim=[types["std_msgs/msg/MultiArrayDimension"](label="action", size=7, stride=7)], data_offset=0)
        return types["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.asarray(values, dtype=np.float64))

    def _twist(self, twist: Any, t_ns: int) -> Any:
        types = self._store.types
        vector = types["geometry_msgs/msg/Vector3"]
        return types["geometry_msgs/msg/TwistStamped"](
            header=self._header(t_ns, self.base_frame),
            twist=types["geometry_msgs/msg/Twist"](linear=vector(*map(float, twist.linear)),
                                                  angular=vector(*map(float, twist.angular))))
