"""The closed loop over DDS: magma_sim and magma_node as processes (``python -m magma_ros.demo``,
lockstep on simulated time) reaching targets from seeded scenes, the same way twice; magma_sim's
clean exit on signals; the demo's refusals. In a module of its own, so that no other simulator
shares the domain meanwhile."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

DEADLINE_S = 60.0


def run_demo(out, *args):
    """``python -m magma_ros.demo`` (lockstep by default): its result and summary.json."""
    result = subprocess.run([sys.executable, "-m", "magma_ros.demo", "--out", str(out), *args],
                            capture_output=True, text=True, timeout=900)
    summary_path = out / "summary.json"
    assert summary_path.exists(), result.stdout + result.stderr
    return result, json.loads(summary_path.read_text())


DEMO_ARGS = ("--seed", "900", "--episodes", "3", "--instruction", "reach the green cube", "--timeout", "20")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, *run_demo(out, *DEMO_ARGS)


def test_closed_loop_with_magma_node_reaches_targets(demo_run):
    """make demo's runner: magma_sim + magma_node (demo backend) as processes over DDS, in lockstep."""
    out, result, summary = demo_run
    assert summary["lockstep"] is True
    assert summary["successes"] == 3 and result.returncode == 0, result.stdout + result.stderr
    assert "step" in result.stdout and "distance" in result.stdout and "safety active" in result.stdout
    for episode in summary["episodes"]:
        assert "active" in episode["safety_states"]
        assert episode["lockstep_timeouts"] == 0, (episode, (out / "magma_sim.log").read_text())
        # simulated time: the same bound whatever the load (the in-process loop needs about 8 steps)
        assert 0 < episode["steps"] <= 20
        assert episode["final_distance_m"] < 0.04
        assert (out / f"frames_seed{episode['seed']}.png").stat().st_size > 10_000
        assert (out / f"commands_seed{episode['seed']}.png").stat().st_size > 10_000


def test_lockstep_demo_is_reproducible(demo_run, tmp_path):
    """Same seed, same policy: the same steps, simulated duration and final distance, also when the
    scene runs alone in a new demo instead of after two other episodes (one episode keeps it quick)."""
    _, _, first = demo_run
    last = first["episodes"][-1]
    _, second = run_demo(tmp_path, "--seed", str(last["seed"]), "--episodes", "1", *DEMO_ARGS[4:])

    def outcome(episode):
        return (episode["seed"], episode["success"], episode["steps"], episode["duration_s"],
                episode["final_distance_m"], episode["lockstep_timeouts"])

    assert [outcome(e) for e in second["episodes"]] == [outcome(last)]


@pytest.mark.parametrize("params", [["-p", "lockstep:=true"], ["-p", "lockstep:=false"],
                                    ["-p", "use_sim_time:=true", "-p", "real_time_factor:=2.0"]])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_magma_sim_stops_cleanly_on_a_signal(console_script, tmp_path, params, signum):
    """Exit 0 and no traceback, in every mode; how fast is printed by bench/sim_timing.py."""
    log_path = tmp_path / "sim.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([console_script("magma_sim"), "--ros-args", *params], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while "magma_sim ready" not in log_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.1)
        assert "magma_sim ready" in log_path.read_text()
        proc.send_signal(signum)
        assert proc.wait(DEADLINE_S) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


@pytest.mark.parametrize("env, args, message", [
    ({"MAGMA_MODEL": "/models/Magma-8B", "MAGMA_DEVICE": "cuda"}, [], "no CUDA GPU"),
    ({}, ["--instruction", "make coffee"], "expected"),
])
def test_demo_refuses_what_it_cannot_run(tmp_path, env, args, message):
    """No silent fallback: a configured Magma without a GPU is an error, not the demo policy."""
    import os

    torch = pytest.importorskip("torch")
    if env and torch.cuda.is_available():
        pytest.skip("a GPU is present: MAGMA_MODEL would be used")
    out = subprocess.run([sys.executable, "-m", "magma_ros.demo", "--out", str(tmp_path), *args],
                         capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "summary.json").exists()
