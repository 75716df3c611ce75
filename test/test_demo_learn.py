"""``make demo-learn`` end to end at test size (tiny model, one episode per instruction, a few
training steps): every stage's output is checked, not the success rate."""
from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace

import numpy as np
import pytest

from magma_ros.demo_learn.pipeline import Stage, StageFailed, deterministic_env, magma_ros, write_report

STAGES = ["base model", "record", "stats", "before", "finetune", "after", "report"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_learn") / "run"
    proc = subprocess.run([sys.executable, "-m", "magma_ros.demo_learn", "--model-size", "tiny", "--episodes", "1",
                           "--eval-episodes", "1", "--max-steps", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    return out, proc


def test_every_stage_runs_and_is_timed(run):
    out, proc = run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["failed_stage"] is None
    assert [s["stage"] for s in report["stages"]] == STAGES
    assert all(s["seconds"] > 0 and s["error"] is None for s in report["stages"])
    rates = report["success_rates"]
    assert set(rates) == {"expert", "before", "after"} and all(0.0 <= v <= 1.0 for v in rates.values())
    for stage in STAGES:
        assert f"== {stage}: done in" in proc.stdout
    markdown = (out / "report.md").read_text()
    assert "| model after fine-tuning |" in markdown and "| total |" in markdown
    assert "stats reach_the_red_cube_seed1000 100.0%" in proc.stderr  # the stages' progress bars reach the terminal
    assert "magma: reach the blue cube 100.0%" in proc.stderr  # the untrained model's evaluation


def test_recorded_bags_are_read_by_eval_with_the_teleop_topics(run, console_script, tmp_path):
    out, _ = run
    bags = sorted(p for p in (out / "demos").iterdir())
    assert [b.name for b in bags] == [f"reach_the_{c}_cube_seed1000" for c in ("blue", "green", "red")]
    proc = subprocess.run([console_script("magma-ros"), "eval", str(bags[0]), "--robot", str(out / "robot.yaml"),
                           "--twist-topic", "/teleop/twist", "--gripper-topic", "/teleop/gripper", "--backend", "fixed",
                           "--fixed-action", "0,0,0,0,0,0,1", "--out", str(tmp_path), "--quiet", "--no-plots"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    frames = json.loads((tmp_path / "report.json").read_text())["frames"]
    assert frames["evaluated"] == frames["images"] > 0


def test_stats_profile_and_fine_tuned_checkpoint_load(run):
    from magma_ros.actions.profiles import load_profile
    from magma_ros.policy.config import BackendConfig
    from magma_ros.policy.registry import create_policy

    out, _ = run
    profile = load_profile(str(out / "robot.yaml"))
    assert profile.name == "sim_panda_learned" and profile.control_rate_hz == pytest.approx(5.0)
    assert all(lo <= hi for lo, hi in zip(profile.stats.q01, profile.stats.q99))
    assert profile.stats.q01[2] < 0  # the gripper starts above the cubes: the expert descends
    assert profile.stats.q01[3:6] == profile.stats.q99[3:6] == (0.0, 0.0, 0.0)  # random steps do not rotate
    trained = load_profile(str(out / "model" / "robot.yaml"))
    assert trained.stats.q01 == profile.stats.q01
    policy = create_policy(BackendConfig(backend="magma", model=str(out / "model"), device="cpu", dtype="float32"),
                           trained)
    try:
        prediction = policy.predict(np.zeros((256, 256, 3), np.uint8), "reach the red cube")
    finally:
        policy.close()
    assert len(prediction.token_ids) == 7


def test_closed_loop_reports_and_figures(run):
    out, _ = run
    before = json.loads((out / "eval_before" / "report.json").read_text())
    after = json.loads((out / "eval_after" / "report.json").read_text())
    assert list(before["controllers"]) == ["magma"] and set(after["controllers"]) == {"magma", "expert"}
    assert before["seeds"] == after["seeds"] == [5000, 5000]
    recorded = json.loads((out / "expert_train" / "report.json").read_text())
    assert recorded["camera"] == before["camera"] == after["camera"] == "wrist"  # trained and evaluated alike
    assert len(list((out / "learned_episodes").iterdir())) == 3  # the fine-tuned model's episodes, recorded
    assert (out / "loss.png").stat().st_size > 0
    assert all((out / "logs" / f"{name}.log").is_file() for name in ("record", "stats", "finetune", "eval_after"))


def test_vision_std_scales_only_the_vision_towers_matrices():
    from magma_ros.policy.magma_native.small_checkpoint import SmallMagmaSpec, magma_config, random_weights

    ids = {"<|begin_of_text|>": 0, "<|eot_id|>": 1, "<pad>": 2, "<image>": 3}
    config = magma_config(300, ids, SmallMagmaSpec())
    plain = random_weights(config, 0, std=0.02)
    vision = random_weights(config, 0, std=0.02, vision_std=0.3)
    for name, tensor in plain.items():
        if name.startswith("vision_tower.") and tensor.dim() >= 2:
            assert vision[name].allclose(tensor * 15), name
        else:
            assert (vision[name] == tensor).all(), name


def test_the_small_tokenizer_has_a_token_per_word_of_every_sim_instruction():
    from magma_ros.policy.magma_native.small_checkpoint import build_tokenizer
    from magma_ros.sim.tasks import INSTRUCTIONS

    tokenizer = build_tokenizer()
    prompts = [tokenizer.encode(f"What action should the robot take to {text}?").tokens for text in INSTRUCTIONS]
    assert len({len(tokens) for tokens in prompts}) == 1, prompts  # the colour never shifts the image's offset
    for text, tokens in zip(INSTRUCTIONS, prompts):
        assert tokens[-5:] == ["Ġreach", "Ġthe", f"Ġ{text.split()[2]}", "Ġcube", "?"], tokens


def test_epochs_are_whole_as_finetune_takes_them():
    from magma_ros.demo_learn.pipeline import parse_args

    assert parse_args(["--epochs", "19"]).epochs == 19
    with pytest.raises(SystemExit) as exc:
        parse_args(["--epochs", "19.5"])
    assert exc.value.code == 2


@pytest.mark.parametrize("value", ["1", "-0.1", "nan"])
def test_an_expert_perturbation_outside_0_1_is_refused_before_any_stage(value, capsys):
    """The same rule as sim-eval's (the stage that uses it), before the first stage runs."""
    from magma_ros.demo_learn.pipeline import parse_args

    assert parse_args(["--expert-perturbation", "0.3"]).expert_perturbation == 0.3
    with pytest.raises(SystemExit) as exc:
        parse_args(["--expert-perturbation", value])
    assert exc.value.code == 2
    assert "--expert-perturbation: perturbation must be in [0, 1), got" in capsys.readouterr().err


def test_a_failing_command_names_itself_and_its_error(tmp_path):
    with pytest.raises(StageFailed,
                       match=r"magma-ros stats exited with status 2: magma-ros stats: error: give the ground truth"):
        magma_ros(["stats", tmp_path / "missing_bag", "--out", tmp_path / "p.yaml"], deterministic_env(),
                  tmp_path / "stats.log")
    assert (tmp_path / "stats.log").read_text().startswith("$ magma-ros stats")


def test_the_report_says_which_stage_failed_and_why(tmp_path):
    args = Namespace(episodes=2, eval_episodes=1, record_seed=1000, eval_seed=5000, max_steps=40, out=tmp_path)
    stages = [Stage("base model", 1.0), Stage("record", 2.0, error="magma-ros sim-eval exited with status 2: boom")]
    text = write_report(tmp_path, args, stages, {})
    assert "**FAILED at stage 'record'**: magma-ros sim-eval exited with status 2: boom" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failed_stage"] == {"stage": "record", "error": "magma-ros sim-eval exited with status 2: boom"}
    assert report["success_rates"] == {"expert": None, "before": None, "after": None}
