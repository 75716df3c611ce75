"""The simulator pieces in-process: tasks, the world's Cartesian control and camera, the expert."""
from __future__ import annotations

import numpy as np
import pytest

from magma_ros.actions.twist import Twist
from magma_ros.sim.camera import project
from magma_ros.sim.controllers import ExpertController, ZeroController
from magma_ros.sim.episode import run_episode
from magma_ros.sim.tasks import (
    CUBE_HALF_SIZE,
    INSTRUCTIONS,
    PICK_INSTRUCTIONS,
    SUCCESS_RADIUS,
    Task,
    TaskError,
    parse_instruction,
)
from magma_ros.sim.world import SimConfig, SimWorld


@pytest.fixture(scope="module")
def world():
    w = SimWorld()
    yield w
    w.close()


@pytest.mark.parametrize("text, task", [("reach the red cube", Task("red")), ("Touch the BLUE cube.", Task("blue")),
                                        ("move to the green cube", Task("green")),
                                        ("pick up the blue cube", Task("blue", "pick")),
                                        ("lift the red cube", Task("red", "pick"))])
def test_parse_instruction(text, task):
    assert parse_instruction(text) == task


@pytest.mark.parametrize("text", ["reach the cube", "reach the red and blue cube", "reach and lift the red cube",
                                  "reach the red ball", "push the red cube", ""])
def test_parse_instruction_rejects_what_it_cannot_do(text):
    with pytest.raises(TaskError, match="expected"):
        parse_instruction(text)


def test_reset_is_deterministic_per_seed(world):
    world.reset(5)
    first = {c: world.cube_position(c) for c in ("red", "green", "blue")}
    ee = world.ee_position()
    world.reset(6)
    assert not np.allclose(world.cube_position("red"), first["red"])
    world.reset(5)
    for colour, position in first.items():
        assert np.allclose(world.cube_position(colour), position, atol=1e-4)
    assert np.allclose(world.ee_position(), ee, atol=1e-3)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_twist_moves_the_gripper_along_that_base_axis(world, axis, sign):
    world.reset(1)
    start = world.ee_position()
    linear = np.zeros(3)
    linear[axis] = 0.1 * sign
    world.apply(linear, np.zeros(3), 1.0, 0.5)
    world.apply(np.zeros(3), np.zeros(3), 1.0, 0.3)  # settle
    moved = world.ee_position() - start
    assert moved[axis] * sign == pytest.approx(0.05, abs=0.01)
    others = [i for i in range(3) if i != axis]
    assert np.all(np.abs(moved[others]) < 0.01)


def test_angular_twist_turns_the_gripper_about_base_z(world):
    world.reset(1)
    _, q0 = world.ee_pose()
    world.apply(np.zeros(3), np.array([0.0, 0.0, 0.5]), 1.0, 0.6)
    world.apply(np.zeros(3), np.zeros(3), 1.0, 0.3)
    _, q1 = world.ee_pose()
    import pybullet as pb

    yaw0 = pb.getEulerFromQuaternion(q0.tolist())[2]
    yaw1 = pb.getEulerFromQuaternion(q1.tolist())[2]
    turned = (yaw1 - yaw0 + np.pi) % (2 * np.pi) - np.pi
    assert turned == pytest.approx(0.3, abs=0.05)


def test_gripper_command_closes_and_opens_the_fingers(world):
    world.reset(2)
    _, opened, _ = world.joint_state()
    world.apply(np.zeros(3), np.zeros(3), 0.0, 0.5)
    _, closed, _ = world.joint_state()
    assert opened[-1] == pytest.approx(0.04, abs=0.003) and closed[-1] < 0.01
    world.apply(np.zeros(3), np.zeros(3), 1.0, 0.5)
    assert world.joint_state()[1][-1] == pytest.approx(0.04, abs=0.003)


def test_non_finite_twist_is_refused(world):
    with pytest.raises(ValueError, match="finite"):
        world.apply(np.array([np.nan, 0, 0]), np.zeros(3), 1.0, 0.1)


def test_camera_image_and_projection_agree(world):
    world.reset(3)
    image = world.render()
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    for colour, channel in (("red", 0), ("green", 1), ("blue", 2)):
        col, row = project(world.cube_position(colour), world.config)[0]
        pixel = image[int(round(row)), int(round(col))].astype(int)
        assert pixel[channel] == pixel.max() and pixel[channel] > 90, (colour, pixel)


def test_wrist_camera_looks_straight_down_from_the_grasp_point():
    """Eye-in-hand view: image up is base +x, image right is base -y, the centre is under the gripper."""
    wrist = SimWorld(SimConfig(camera="wrist"))
    try:
        wrist.reset(3)
        image = wrist.render()
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        ee = wrist.ee_position()
        focal = 1.0 / np.tan(np.radians(wrist.config.wrist_fov_deg) / 2.0)
        seen = 0
        for colour, channel in (("red", 0), ("green", 1), ("blue", 2)):
            top = wrist.cube_position(colour) + np.array([0.0, 0.0, CUBE_HALF_SIZE])
            depth = ee[2] - top[2]
            col = (1.0 - (top[1] - ee[1]) * focal / depth) * 128
            row = (1.0 - (top[0] - ee[0]) * focal / depth) * 128
            if 0 <= col < 256 and 0 <= row < 256:
                pixel = image[int(row), int(col)].astype(int)
                assert pixel[channel] == pixel.max() and pixel[channel] > 90, (colour, pixel)
                seen += 1
        assert seen >= 1
    finally:
        wrist.close()


def test_unknown_camera_is_refused():
    with pytest.raises(ValueError, match="camera must be one of scene, wrist"):
        SimConfig(camera="fisheye")


def test_expert_reaches_every_target_and_zero_action_does_not(world):
    for seed, instruction in enumerate(INSTRUCTIONS * 2):
        expert = run_episode(world, instruction, seed, ExpertController(), control_rate_hz=5.0, max_steps=40)
        assert expert.success and expert.final_distance < SUCCESS_RADIUS, (seed, instruction, expert.final_distance)
        zero = run_episode(world, instruction, seed, ZeroController(), control_rate_hz=5.0, max_steps=5)
        assert not zero.success and zero.steps == 5
        assert all(r.twist.is_zero() for r in zero.records)


def test_expert_picks_up_every_cube(world):
    for seed, instruction in enumerate(PICK_INSTRUCTIONS, start=20):
        colour = parse_instruction(instruction).colour
        result = run_episode(world, instruction, seed, ExpertController(), control_rate_hz=5.0, max_steps=40)
        assert result.success and world.cube_position(colour)[2] > 0.08, (seed, instruction)
        assert result.records[-1].gripper == 0.0 and world.finger_opening() < 0.03
        others = [c for c in ("red", "green", "blue") if c != colour]
        assert all(world.cube_position(c)[2] < 0.03 for c in others)


def test_pick_is_not_done_until_the_cube_is_lifted(world):
    world.reset(21)
    task = Task("red", "pick")
    cube = world.cube_position("red")
    assert not task.succeeded(cube, cube), "the gripper at the cube is not a pick"
    assert task.succeeded(cube, cube + [0, 0, 0.07])


def test_episode_records_what_was_commanded(world):
    class Down:
        needs_image = True

        def reset(self):
            pass

        def act(self, image, instruction, world, dt):
            assert image.shape == (256, 256, 3)
            return Twist(np.array([0.0, 0.0, -0.05]), np.zeros(3)), 1.0

    result = run_episode(world, "reach the red cube", 0, Down(), control_rate_hz=5.0, max_steps=3,
                         record_images=True)
    assert result.steps == 3
    zs = [r.ee_position[2] for r in result.records]
    assert zs[0] > zs[1] > zs[2]
    assert all(r.image is not None for r in result.records)
