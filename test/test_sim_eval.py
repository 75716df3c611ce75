"""``magma-ros sim-eval`` as a user runs it: reports, baselines, errors."""
from __future__ import annotations

import json
import subprocess

import pytest


def run(console_script, *args, timeout=240):
    return subprocess.run([console_script("magma-ros"), "sim-eval", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_sim_eval_reports_backend_and_baselines(console_script, tmp_path):
    out = run(console_script, "--episodes", "2", "--seed-start", "700", "--instruction", "reach the green cube",
              "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["controllers"]) == {"demo", "expert", "zero"}
    assert report["robot"] == "sim_panda" and report["backend"] == "demo" and report["camera"] == "scene"
    assert report["episodes_per_instruction"] == 2 and report["seeds"] == [700, 701]
    assert report["controllers"]["expert"]["success_rate"] == 1.0
    zero = report["controllers"]["zero"]["instructions"]["reach the green cube"]
    assert zero["success_rate"] == 0.0 and zero["mean_steps"] == 40
    demo = report["controllers"]["demo"]["instructions"]["reach the green cube"]
    assert [e["seed"] for e in demo["episodes"]] == [700, 701]
    markdown = (tmp_path / "report.md").read_text()
    assert "| expert | reach the green cube | 100% |" in markdown
    assert "| zero | reach the green cube | 0% |" in markdown
    assert markdown in out.stdout
    assert "6/6" in out.stderr  # the progress bar


def test_fixed_backend_without_baselines(console_script, tmp_path):
    """Any backend runs: a constant step along +x never reaches a cube within 3 steps."""
    out = run(console_script, "--backend", "fixed", "--fixed-action", "0.01,0,0,0,0,0,1", "--episodes", "1",
              "--max-steps", "3", "--baselines", "none", "--no-progress", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["controllers"]) == ["fixed"]
    assert out.stderr == ""


def test_wrist_camera_is_reported(console_script, tmp_path):
    out = run(console_script, "--backend", "expert", "--camera", "wrist", "--episodes", "1", "--instruction",
              "reach the blue cube", "--baselines", "none", "--no-progress", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["camera"] == "wrist" and report["controllers"]["expert"]["success_rate"] == 1.0


def test_unknown_camera_exits_2(console_script, tmp_path):
    out = run(console_script, "--camera", "fisheye", "--out", str(tmp_path), timeout=120)
    assert out.returncode == 2 and "--camera: invalid choice: 'fisheye'" in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--instruction", "dance"], "--instruction"),
    (["--baselines", "expert,random"], "unknown baseline 'random'"),
    (["--robot", "no_such_robot"], "unknown robot"),
    (["--backend", "fixed"], "fixed_action"),
])
def test_user_errors_exit_2_with_one_line(console_script, tmp_path, args, message):
    out = run(console_script, *args, "--episodes", "1", "--out", str(tmp_path), timeout=120)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
