"""``magma-ros sim-eval --backend expert --record DIR``: one teleoperation-shaped bag per episode,
each camera frame paired with exactly the action the expert executed in response to it."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from magma_ros.actions.twist import delta_to_twist
from magma_ros.eval.bag import open_bag
from magma_ros.eval.convert import image_to_rgb
from magma_ros.interface import IMAGE, INSTRUCTION, TELEOP_ACTION, TELEOP_GRIPPER, TELEOP_TWIST
from magma_ros.sim.expert import expert_action
from magma_ros.sim.tasks import parse_instruction

INSTRUCTION_TEXT = "reach the blue cube"
SEEDS = (40, 41)


def sim_eval(console_script, *args, timeout=240):
    return subprocess.run([console_script("magma-ros"), "sim-eval", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def recording(console_script, tmp_path_factory):
    root = tmp_path_factory.mktemp("sim_record")
    out = sim_eval(console_script, "--backend", "expert", "--episodes", len(SEEDS), "--seed-start", SEEDS[0],
                   "--instruction", INSTRUCTION_TEXT, "--baselines", "none", "--record", root / "bags",
                   "--out", root / "report", "--no-progress")
    assert out.returncode == 0, out.stderr
    return root


def read_bag(path):
    """{topic: [(t_ns, message)]} in bag order."""
    messages: dict[str, list] = {}
    with open_bag(path) as reader:
        for conn, t_ns, raw in reader.messages():
            messages.setdefault(conn.topic, []).append((t_ns, reader.deserialize(raw, conn.msgtype)))
    return messages


def test_one_bag_per_episode_with_the_teleop_topics(recording):
    report = json.loads((recording / "report" / "report.json").read_text())
    assert list(report["controllers"]) == ["expert"] and report["backend"] == "expert"
    episodes = report["controllers"]["expert"]["instructions"][INSTRUCTION_TEXT]["episodes"]
    bags = sorted(p.name for p in (recording / "bags").iterdir())
    assert bags == [f"reach_the_blue_cube_seed{seed:04d}" for seed in SEEDS]
    for bag, episode in zip(bags, episodes):
        messages = read_bag(recording / "bags" / bag)
        assert set(messages) == {t.absolute for t in (IMAGE, INSTRUCTION, TELEOP_ACTION, TELEOP_TWIST, TELEOP_GRIPPER)}
        assert [m.data for _, m in messages[INSTRUCTION.absolute]] == [INSTRUCTION_TEXT]
        steps = episode["steps"]
        assert steps > 1
        assert all(len(messages[t.absolute]) == steps for t in (IMAGE, TELEOP_ACTION, TELEOP_TWIST, TELEOP_GRIPPER))


def test_each_frame_is_paired_with_the_action_taken_on_it(recording):
    """Replay every episode in this process: frame i of the bag is the image the world shows
    before step i, and action i is the expert's action in that state (not the one before or after)."""
    from magma_ros.sim.world import SimWorld

    task = parse_instruction(INSTRUCTION_TEXT)
    world = SimWorld()
    try:
        for seed in SEEDS:
            messages = read_bag(recording / "bags" / f"reach_the_blue_cube_seed{seed:04d}")
            frames = messages[IMAGE.absolute]
            world.reset(seed)
            for i, (t_frame, image) in enumerate(frames):
                t_action, action = messages[TELEOP_ACTION.absolute][i]
                _, twist = messages[TELEOP_TWIST.absolute][i]
                _, gripper = messages[TELEOP_GRIPPER.absolute][i]
                next_frame = frames[i + 1][0] if i + 1 < len(frames) else None
                assert t_frame < t_action and (next_frame is None or t_action < next_frame)
                assert np.array_equal(image_to_rgb(image, IMAGE.type), world.render()), f"seed {seed} frame {i}"
                expected = expert_action(task, world.ee_position(), world.cube_position(task.colour),
                                         world.finger_opening())
                np.testing.assert_allclose(np.asarray(action.data), expected, atol=1e-12)
                command = delta_to_twist(expected, 0.2)
                linear = twist.twist.linear
                np.testing.assert_allclose([linear.x, linear.y, linear.z], command.linear, atol=1e-12)
                assert gripper.data == expected[6]
                world.apply(command.linear, command.angular, expected[6], 0.2)
    finally:
        world.close()


@pytest.mark.parametrize("truth", [["--action-topic", TELEOP_ACTION.absolute],
                                   ["--twist-topic", TELEOP_TWIST.absolute,
                                    "--gripper-topic", TELEOP_GRIPPER.absolute]])
def test_eval_reads_the_recording_with_the_documented_topics(console_script, recording, tmp_path, truth):
    bag = recording / "bags" / f"reach_the_blue_cube_seed{SEEDS[0]:04d}"
    out = subprocess.run([console_script("magma-ros"), "eval", str(bag), "--robot", "sim_panda", *truth,
                          "--backend", "fixed", "--fixed-action", "0,0,0,0,0,0,1", "--out", str(tmp_path),
                          "--quiet", "--no-plots"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    frames = json.loads((tmp_path / "report.json").read_text())["frames"]
    steps = len(read_bag(bag)[IMAGE.absolute])
    assert frames["images"] == frames["evaluated"] == steps
    assert not any(frames["skipped"].values())


def test_recording_into_a_used_directory_is_refused(console_script, recording, tmp_path):
    out = sim_eval(console_script, "--backend", "expert", "--episodes", 1, "--baselines", "none",
                   "--record", recording / "bags", "--out", tmp_path, "--no-progress", timeout=120)
    assert out.returncode == 2
    assert "--record" in out.stderr and "not empty" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_perturbed_expert_is_recorded_as_executed(console_script, tmp_path):
    """--expert-perturbation: some steps are random (within the expert's step, no rotation, its
    gripper), the others the expert's own; replaying the recorded actions gives the recorded frames."""
    from magma_ros.sim.expert import EXPERT_MAX_STEP
    from magma_ros.sim.world import SimWorld

    seed = SEEDS[0]
    out = sim_eval(console_script, "--backend", "expert", "--expert-perturbation", "0.5", "--episodes", 1,
                   "--seed-start", seed, "--instruction", INSTRUCTION_TEXT, "--baselines", "none",
                   "--record", tmp_path / "bags", "--out", tmp_path / "report", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "report" / "report.json").read_text())["expert_perturbation"] == 0.5
    messages = read_bag(tmp_path / "bags" / f"reach_the_blue_cube_seed{seed:04d}")
    task = parse_instruction(INSTRUCTION_TEXT)
    world = SimWorld()
    kinds = []
    try:
        world.reset(seed)
        for (_, image), (_, action) in zip(messages[IMAGE.absolute], messages[TELEOP_ACTION.absolute]):
            assert np.array_equal(image_to_rgb(image, IMAGE.type), world.render())
            action = np.asarray(action.data)
            expert = expert_action(task, world.ee_position(), world.cube_position(task.colour), world.finger_opening())
            kinds.append("expert" if np.allclose(action, expert, atol=1e-12) else "random")
            assert np.all(np.abs(action[:3]) <= EXPERT_MAX_STEP) and not np.any(action[3:6])
            assert action[6] == expert[6]
            command = delta_to_twist(action, 0.2)
            world.apply(command.linear, command.angular, action[6], 0.2)
    finally:
        world.close()
    assert "expert" in kinds and "random" in kinds, kinds


@pytest.mark.parametrize("args, message", [
    (["--backend", "fixed", "--fixed-action", "0,0,0,0,0,0,1", "--expert-perturbation", "0.3"],
     "--expert-perturbation: only with --backend expert"),
    (["--backend", "expert", "--expert-perturbation", "1"], "must be in [0, 1), got 1"),
    (["--backend", "expert", "--expert-perturbation", "abc"], "--expert-perturbation: not a number: 'abc'"),
])
def test_expert_perturbation_errors_exit_2(console_script, tmp_path, args, message):
    out = sim_eval(console_script, *args, "--episodes", 1, "--baselines", "none", "--out", tmp_path,
                   "--no-progress", timeout=120)
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.strip().splitlines()[-1].count(message) == 1, out.stderr


def test_expert_controller_refuses_a_perturbation_outside_0_1():
    from magma_ros.sim.controllers import ExpertController

    with pytest.raises(ValueError, match="perturbation must be in"):
        ExpertController(1.0)
