"""The simulated arm: a Franka Panda on a table with coloured cubes (PyBullet, headless).

Commands are Cartesian: a twist in the base frame (m/s, rad/s) held for a duration, executed by
integrating an end-effector target and solving IK every physics step, and a gripper opening in
[0, 1] (1 open). The camera, rendered on the CPU, is a fixed third-person view (``scene``) or an
eye-in-hand view from the grasp point straight down at the table (``wrist``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from .tasks import CUBE_COLOURS, CUBE_HALF_SIZE

BASE_FRAME = "panda_link0"
EE_LINK = 11  # panda_grasptarget: between the fingertips
ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
FINGER_OPEN = 0.04  # metres per finger
PHYSICS_HZ = 240.0
DOWN = (np.pi, 0.0, 0.0)  # gripper pointing at the table (roll, pitch, yaw)
REST_POSE = (0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785)
CAMERAS = ("scene", "wrist")


@dataclass(frozen=True)
class SimConfig:
    """Scene layout and camera (metres, base frame)."""

    image_size: int = 256
    camera: str = "scene"  # scene: the fixed view below; wrist: from the grasp point, straight down
    camera_eye: tuple[float, float, float] = (1.00, 0.45, 0.70)
    camera_target: tuple[float, float, float] = (0.45, 0.0, 0.14)
    camera_fov_deg: float = 58.0
    cube_x: tuple[float, float] = (0.38, 0.62)
    cube_y: tuple[float, float] = (-0.22, 0.22)
    cube_min_separation: float = 0.10
    start_x: tuple[float, float] = (0.30, 0.50)
    start_y: tuple[float, float] = (-0.15, 0.15)
    start_z: tuple[float, float] = (0.22, 0.36)
    workspace_min: tuple[float, float, float] = (0.20, -0.35, 0.015)
    workspace_max: tuple[float, float, float] = (0.75, 0.35, 0.50)
    wrist_fov_deg: float = 90.0
    wrist_near: float = 0.005  # metres: the fingers, above the grasp point, stay out of the wrist view

    def __post_init__(self) -> None:
        if self.camera not in CAMERAS:
            raise ValueError(f"camera must be one of {', '.join(CAMERAS)}, got {self.camera!r}")


class SimWorld:
    """One PyBullet world. Not thread-safe: drive it from one thread."""

    def __init__(self, config: SimConfig | None = None) -> None:
        pb = _import_pybullet()
        import pybullet_data

        self.config = config or SimConfig()
        self._pb = pb
        self._client = pb.connect(pb.DIRECT)
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self._client)
        pb.setGravity(0, 0, -9.81, physicsClientId=self._client)
        pb.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=self._client)
        pb.loadURDF("plane.urdf", [0, 0, -0.625], physicsClientId=self._client)
        pb.loadURDF("table/table.urdf", [0.5, 0, -0.625], useFixedBase=True, physicsClientId=self._client)
        self.robot = pb.loadURDF("franka_panda/panda.urdf", [0, 0, 0], useFixedBase=True,
                                 flags=pb.URDF_USE_SELF_COLLISION, physicsClientId=self._client)
        self.joint_names = tuple(
            pb.getJointInfo(self.robot, j, physicsClientId=self._client)[1].decode()
            for j in ARM_JOINTS + FINGER_JOINTS
        )
        lower, upper = [], []
        for j in ARM_JOINTS:
            info = pb.getJointInfo(self.robot, j, physicsClientId=self._client)
            lower.append(info[8])
            upper.append(info[9])
        self._limits = (lower, upper, [high - low for low, high in zip(lower, upper)])
        self.cubes: dict[str, int] = {}
        box = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=[CUBE_HALF_SIZE] * 3, physicsClientId=self._client)
        for i, (name, rgba) in enumerate(CUBE_COLOURS.items()):
            visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[CUBE_HALF_SIZE] * 3, rgbaColor=rgba,
                                          physicsClientId=self._client)
            self.cubes[name] = pb.createMultiBody(0.05, box, visual, [0.5, 0.1 * i, CUBE_HALF_SIZE],
                                                  physicsClientId=self._client)
            pb.changeDynamics(self.cubes[name], -1, lateralFriction=1.0, physicsClientId=self._client)
        cfg = self.config
        self._view = pb.computeViewMatrix(cfg.camera_eye, cfg.camera_target, [0, 0, 1])
        self._proj = pb.computeProjectionMatrixFOV(cfg.camera_fov_deg, 1.0, 0.05, 5.0)
        self._wrist_proj = pb.computeProjectionMatrixFOV(cfg.wrist_fov_deg, 1.0, cfg.wrist_near, 5.0)
        self._down = np.asarray(pb.getQuaternionFromEuler(DOWN))
        self.time = 0.0
        self.reset(0)

    # ---- episode -------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """New episode: cubes at random separated positions, the gripper at a random start, open."""
        pb, cid, cfg = self._pb, self._client, self.config
        rng = np.random.default_rng(seed)
        placed: list[np.ndarray] = []
        for cube in self.cubes.values():
            for _ in range(1000):
                xy = np.array([rng.uniform(*cfg.cube_x), rng.uniform(*cfg.cube_y)])
                if all(np.linalg.norm(xy - other) >= cfg.cube_min_separation for other in placed):
                    break
            placed.append(xy)
            yaw = rng.uniform(-0.6, 0.6)
            pb.resetBasePositionAndOrientation(cube, [xy[0], xy[1], CUBE_HALF_SIZE],
                                               pb.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=cid)
            pb.resetBaseVelocity(cube, [0, 0, 0], [0, 0, 0], physicsClientId=cid)
        start = np.array([rng.uniform(*cfg.start_x), rng.uniform(*cfg.start_y), rng.uniform(*cfg.start_z)])
        for j, q in zip(ARM_JOINTS, REST_POSE):
            pb.resetJointState(self.robot, j, q, physicsClientId=cid)
        for _ in range(20):  # IK from the rest pose converges in a few rounds
            for j, q in zip(ARM_JOINTS, self._ik(start, self._down)):
                pb.resetJointState(self.robot, j, q, physicsClientId=cid)
        for j in FINGER_JOINTS:
            pb.resetJointState(self.robot, j, FINGER_OPEN, physicsClientId=cid)
        self._target_pos = self.ee_position()
        self._target_orn = self._down.copy()
        self._gripper = 1.0
        self._hold(self._current_arm_positions())
        self.time = 0.0
        for _ in range(int(0.1 * PHYSICS_HZ)):
            pb.stepSimulation(physicsClientId=cid)

    # ---- commands ------------------------------------------------------------------------
    def apply(self, linear: np.ndarray, angular: np.ndarray, gripper: float, duration: float) -> None:
        """Move with twist (``linear`` m/s, ``angular`` rad/s, base frame) for ``duration`` seconds."""
        pb, cid, cfg = self._pb, self._client, self.config
        linear = np.asarray(linear, dtype=np.float64)
        angular = np.asarray(angular, dtype=np.float64)
        if linear.shape != (3,) or angular.shape != (3,) or not (np.all(np.isfinite(linear))
                                                                and np.all(np.isfinite(angular))):
            raise ValueError(f"twist must be two finite 3-vectors, got {linear!r}, {angular!r}")
        if not np.isfinite(gripper):
            raise ValueError(f"gripper command must be finite, got {gripper!r}")
        self._gripper = float(np.clip(gripper, 0.0, 1.0))
        dt = 1.0 / PHYSICS_HZ
        steps = max(1, int(round(duration * PHYSICS_HZ)))
        spin = _rotvec_to_quat(angular * dt)
        for _ in range(steps):
            self._target_pos = np.clip(self._target_pos + linear * dt, cfg.workspace_min, cfg.workspace_max)
            if np.any(angular):
                self._target_orn = np.asarray(pb.multiplyTransforms([0, 0, 0], spin, [0, 0, 0], self._target_orn)[1])
            self._hold(self._ik(self._target_pos, self._target_orn))
            pb.stepSimulation(physicsClientId=cid)
        self.time += steps * dt

    def _ik(self, position: np.ndarray, orientation: np.ndarray) -> list[float]:
        lower, upper, ranges = self._limits
        q = self._pb.calculateInverseKinematics(
            self.robot, EE_LINK, list(position), list(orientation), lowerLimits=lower, upperLimits=upper,
            jointRanges=ranges, restPoses=list(REST_POSE), maxNumIterations=50, residualThreshold=1e-5,
            physicsClientId=self._client)
        return list(q[:7])

    def _hold(self, arm_positions: list[float]) -> None:
        pb, cid = self._pb, self._client
        pb.setJointMotorControlArray(self.robot, list(ARM_JOINTS), pb.POSITION_CONTROL,
                                     targetPositions=arm_positions, forces=[200.0] * 7, physicsClientId=cid)
        finger = FINGER_OPEN * self._gripper
        pb.setJointMotorControlArray(self.robot, list(FINGER_JOINTS), pb.POSITION_CONTROL,
                                     targetPositions=[finger, finger], forces=[40.0, 40.0], physicsClientId=cid)

    def _current_arm_positions(self) -> list[float]:
        return [s[0] for s in self._pb.getJointStates(self.robot, list(ARM_JOINTS), physicsClientId=self._client)]

    # ---- observations --------------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        """End-effector (grasp point) position in the base frame (m)."""
        return self.ee_pose()[0]

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position (m) and orientation quaternion (x, y, z, w) in the base frame."""
        state = self._pb.getLinkState(self.robot, EE_LINK, computeForwardKinematics=True,
                                      physicsClientId=self._client)
        return np.asarray(state[4]), np.asarray(state[5])

    def cube_position(self, colour: str) -> np.ndarray:
        """Centre of the named cube (m, base frame)."""
        return np.asarray(self._pb.getBasePositionAndOrientation(self.cubes[colour], physicsClientId=self._client)[0])

    def joint_state(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """Names, positions and velocities of the arm and finger joints."""
        states = self._pb.getJointStates(self.robot, list(ARM_JOINTS + FINGER_JOINTS), physicsClientId=self._client)
        return self.joint_names, np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def finger_opening(self) -> float:
        """Mean finger position (m): 0.04 fully open, about 0.02 when holding a cube."""
        states = self._pb.getJointStates(self.robot, list(FINGER_JOINTS), physicsClientId=self._client)
        return float(np.mean([s[0] for s in states]))

    @property
    def gripper_command(self) -> float:
        """The last gripper opening commanded (1 open, 0 closed)."""
        return self._gripper

    def render(self) -> np.ndarray:
        """The camera image, H x W x 3 uint8 RGB."""
        size = self.config.image_size
        view, proj = self._view, self._proj
        if self.config.camera == "wrist":  # image up = base +x, image right = base -y, whatever the yaw
            eye = self.ee_position()
            view = self._pb.computeViewMatrix(list(eye), list(eye - np.array([0.0, 0.0, 1.0])), [1, 0, 0])
            proj = self._wrist_proj
        _, _, rgba, _, _ = self._pb.getCameraImage(size, size, view, proj,
                                                   renderer=self._pb.ER_TINY_RENDERER,
                                                   physicsClientId=self._client)
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy()

    def close(self) -> None:
        """Disconnect from the physics server."""
        if self._client is not None:
            self._pb.disconnect(physicsClientId=self._client)
            self._client = None


def _import_pybullet():
    """Import pybullet without its build-time banner on stderr (it is printed from C)."""
    if "pybullet" in sys.modules:
        return sys.modules["pybullet"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import pybullet
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return pybullet


def _rotvec_to_quat(rotvec: np.ndarray) -> list[float]:
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return [0.0, 0.0, 0.0, 1.0]
    axis = rotvec / angle
    s = np.sin(angle / 2.0)
    return [axis[0] * s, axis[1] * s, axis[2] * s, float(np.cos(angle / 2.0))]
