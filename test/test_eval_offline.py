"""``magma-ros eval`` on generated bags (MCAP and sqlite3): metrics checked numerically against
independent computations, episodes, every-k, recorded predictions, outputs."""
from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from magma_ros.actions import ActionDecoder, ActionTokenizer, GripperConverter, load_profile
from magma_ros.actions.tokenizer import AXIS_NAMES
from magma_ros.cli import main
from magma_ros.eval.sample_bag import (
    ACTION_TOPIC,
    GRIPPER_TOPIC,
    TWIST_TOPIC,
    SampleSpec,
    frame_index,
    ground_truth,
    instruction_for,
    write_sample_bag,
)
from magma_ros.policy import Prediction, check_image

FRAMES, EPISODES = 60, 2
FIXED = np.array([0.01, -0.02, 0.0, 0.05, 0.0, -0.1, 1.0])
TEST_VOCAB = 32000  # a non-Llama vocabulary, to check the decoder uses the policy's


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def sample_bag(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp(f"bag_{request.param}") / "teleop"
    return write_sample_bag(path, SampleSpec(frames=FRAMES, episodes=EPISODES, storage=request.param))


def truths(profile) -> np.ndarray:
    return np.stack([ground_truth(i, profile) for i in range(FRAMES)])


def gripper_commands(values, profile) -> np.ndarray:
    """Gripper commands per frame, the converter reset at each episode start."""
    conv = GripperConverter(profile.gripper)
    out = []
    for i, v in enumerate(values):
        if i % (FRAMES // EPISODES) == 0:
            conv.reset()
        out.append(conv(float(v)))
    return np.asarray(out)


# A deterministic token backend: the exact ground-truth bins, with x one bin off on odd frames.
CALLS: list[tuple[int, str]] = []


class TokenPolicy:
    vocab_size = TEST_VOCAB

    def __init__(self, profile) -> None:
        self.profile = profile
        self.decoder = ActionDecoder(profile.stats, ActionTokenizer(vocab_size=TEST_VOCAB))

    def predict(self, image, instruction):
        check_image(image)
        i = frame_index(image)
        CALLS.append((i, instruction))
        return Prediction(token_ids=token_ids_for(i, self.decoder, self.profile))

    def close(self) -> None:
        pass


def token_ids_for(i: int, decoder: ActionDecoder, profile) -> np.ndarray:
    ids = decoder.encode(ground_truth(i, profile))
    if i % 2:
        ids[0] += 1 if ids[0] < TEST_VOCAB - 1 else -1
    return ids


def token_policy(config, profile):
    return TokenPolicy(profile)


def run_eval(*args: str) -> int:
    return main(["eval", *map(str, args), "--quiet"])


def load_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_fixed_backend_console_script_metrics(sample_bag, tmp_path, console_script):
    out = tmp_path / "out"
    result = subprocess.run(
        [console_script("magma-ros"), "eval", str(sample_bag), "--robot", "bridge_orig", "--action-topic", ACTION_TOPIC,
         "--backend", "fixed", "--fixed-action", ",".join(map(str, FIXED)), "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ETA" in result.stderr  # progress bar
    report = load_report(out)
    profile = load_profile("bridge_orig")
    gt = truths(profile)
    span = np.asarray(profile.stats.q99) - np.asarray(profile.stats.q01)
    mse = ((FIXED - gt) ** 2).mean(axis=0)
    overall = report["overall"]
    assert report["storage"] in ("mcap", "sqlite3") and report["storage"] in sample_bag.parent.name
    assert report["frames"]["images"] == FRAMES and report["frames"]["evaluated"] == FRAMES
    assert sum(report["frames"]["skipped"].values()) == 0
    for k, axis in enumerate(AXIS_NAMES):
        assert overall["mse"][axis] == pytest.approx(mse[k], rel=1e-9)
        assert overall["nrmse"][axis] == pytest.approx(math.sqrt(mse[k]) / span[k], rel=1e-9)
    decoder = ActionDecoder(profile.stats)
    same_bins = decoder.encode(FIXED)[None, :] == decoder.encode(gt)
    for k, axis in enumerate(AXIS_NAMES):
        assert overall["exact_bin"][axis] == pytest.approx(same_bins[:, k].mean())
    assert overall["exact_bin"]["all"] == pytest.approx(same_bins.all(axis=1).mean())
    agree = gripper_commands(np.full(FRAMES, FIXED[6]), profile) == gripper_commands(gt[:, 6], profile)
    assert overall["gripper_agreement"] == pytest.approx(agree.mean())
    assert 0.0 <= overall["latency_s"]["p50"] <= overall["latency_s"]["p99"]
    # two episodes of 30 frames with their instructions, metrics per episode
    episodes = report["episodes"]
    assert [e["instruction"] for e in episodes] == [instruction_for(0), instruction_for(1)]
    assert [e["frames"] for e in episodes] == [30, 30]
    first = ((FIXED - gt[:30]) ** 2).mean(axis=0)
    assert episodes[0]["mse"]["yaw"] == pytest.approx(first[5], rel=1e-9)
    # per-frame CSV and the plot
    with (out / "frames.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == FRAMES
    assert float(rows[7]["true_z"]) == pytest.approx(gt[7, 2])
    assert float(rows[7]["pred_yaw"]) == pytest.approx(FIXED[5])
    assert rows[45]["instruction"] == instruction_for(1) and rows[45]["episode"] == "1"
    png = (out / "actions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "exact_bin" in result.stdout and "report:" in result.stdout


def test_token_backend_exact_bins_and_instructions(sample_bag, tmp_path):
    CALLS.clear()
    out = tmp_path / "out"
    assert run_eval(sample_bag, "--action-topic", ACTION_TOPIC, "--backend", "test_eval_offline:token_policy",
                    "--out", out, "--no-plots") == 0
    report = load_report(out)
    overall = report["overall"]
    assert overall["exact_bin"]["x"] == pytest.approx(0.5)
    for axis in AXIS_NAMES[1:]:
        assert overall["exact_bin"][axis] == pytest.approx(1.0)
    assert overall["exact_bin"]["all"] == pytest.approx(0.5)
    assert overall["gripper_agreement"] == pytest.approx(1.0)
    # MSE: decoded predicted bins (with the policy's vocabulary) against the recorded values
    profile = load_profile("bridge_orig")
    decoder = ActionDecoder(profile.stats, ActionTokenizer(vocab_size=TEST_VOCAB))
    pred = np.stack([decoder.decode_ids(token_ids_for(i, decoder, profile)) for i in range(FRAMES)])
    mse = ((pred - truths(profile)) ** 2).mean(axis=0)
    for k, axis in enumerate(AXIS_NAMES):
        assert overall["mse"][axis] == pytest.approx(mse[k], rel=1e-9)
    # every frame was seen once, in order, with its episode's instruction
    assert CALLS == [(i, instruction_for(i // 30)) for i in range(FRAMES)]
    assert not (out / "actions.png").exists()


def test_twist_ground_truth_matches_array_ground_truth(sample_bag, tmp_path):
    args = ["--backend", "fixed", "--fixed-action", ",".join(map(str, FIXED)), "--no-plots"]
    assert run_eval(sample_bag, "--action-topic", ACTION_TOPIC, "--out", tmp_path / "a", *args) == 0
    assert run_eval(sample_bag, "--twist-topic", TWIST_TOPIC, "--gripper-topic", GRIPPER_TOPIC,
                    "--out", tmp_path / "t", *args) == 0
    a, t = load_report(tmp_path / "a")["overall"], load_report(tmp_path / "t")["overall"]
    for axis in AXIS_NAMES[:6]:  # twist * control period, rotation vector -> roll/pitch/yaw
        assert t["mse"][axis] == pytest.approx(a["mse"][axis], rel=1e-6, abs=1e-15)
        assert t["exact_bin"][axis] == a["exact_bin"][axis]
    assert t["exact_bin"]["gripper"] is None  # commands are not model bins
    assert t["gripper_agreement"] == a["gripper_agreement"]
    report = load_report(tmp_path / "t")
    assert report["ground_truth"]["gripper_units"] == "command"


def test_every_k_counts_skipped_frames(sample_bag, tmp_path):
    out = tmp_path / "out"
    assert run_eval(sample_bag, "--action-topic", ACTION_TOPIC, "--backend", "fixed", "--fixed-action",
                    ",".join(map(str, FIXED)), "--every", "4", "--out", out, "--no-plots") == 0
    report = load_report(out)
    assert report["frames"]["evaluated"] == 15
    assert report["frames"]["skipped"]["stride"] == 45
    assert not [i for i in report["issues"] if i["kind"] == "stride"]  # counted, not listed
    gt = truths(load_profile("bridge_orig"))[::4]
    assert report["overall"]["mse"]["x"] == pytest.approx(((FIXED[0] - gt[:, 0]) ** 2).mean(), rel=1e-9)


def test_recorded_predictions_from_the_bag(sample_bag, tmp_path):
    out = tmp_path / "out"
    # the recorded twist + gripper command as "predictions" against the recorded 7-vectors
    assert run_eval(sample_bag, "--action-topic", ACTION_TOPIC, "--predicted-twist-topic", TWIST_TOPIC,
                    "--predicted-gripper-topic", GRIPPER_TOPIC, "--out", out, "--no-plots") == 0
    report = load_report(out)
    overall = report["overall"]
    assert report["predictions"]["source"].startswith("recorded")
    assert report["frames"]["evaluated"] == FRAMES
    for axis in AXIS_NAMES:
        assert overall["mse"][axis] == pytest.approx(0.0, abs=1e-20)
    assert overall["gripper_agreement"] == 1.0
    assert overall["latency_s"]["p50"] == pytest.approx(0.020)  # recorded 20 ms after the image


def test_recorded_predictions_exclude_backend(sample_bag, tmp_path, capsys):
    assert run_eval(sample_bag, "--action-topic", ACTION_TOPIC, "--predicted-action-topic", ACTION_TOPIC,
                    "--backend", "fixed", "--out", tmp_path / "o") == 2
    assert "not both" in capsys.readouterr().err


def test_fixed_instruction_without_instruction_topic(sample_bag, tmp_path):
    CALLS.clear()
    out = tmp_path / "out"
    assert run_eval(sample_bag, "--action-topic", ACTION_TOPIC, "--backend", "test_eval_offline:token_policy",
                    "--instruction", "wipe the table", "--instruction-topic", "/not/in/bag", "--out", out,
                    "--no-plots") == 0
    report = load_report(out)
    assert {text for _, text in CALLS} == {"wipe the table"} and len(CALLS) == FRAMES
    assert [e["instruction"] for e in report["episodes"]] == ["wipe the table"]
    assert report["topics"]["instruction"] is None


def test_google_robot_relative_gripper_and_its_statistics(tmp_path):
    bag = write_sample_bag(tmp_path / "google", SampleSpec(frames=FRAMES, episodes=EPISODES, robot="google_robot"))
    action = np.array([0.05, 0.0, -0.05, 0.1, 0.0, 0.0, 0.0])
    out = tmp_path / "out"
    assert run_eval(bag, "--robot", "google_robot", "--action-topic", ACTION_TOPIC, "--backend", "fixed",
                    "--fixed-action", ",".join(map(str, action)), "--out", out, "--no-plots") == 0
    overall = load_report(out)["overall"]
    profile = load_profile("google_robot")
    gt = truths(profile)
    span = np.asarray(profile.stats.q99) - np.asarray(profile.stats.q01)
    mse = ((action - gt) ** 2).mean(axis=0)
    assert overall["nrmse"]["roll"] == pytest.approx(math.sqrt(mse[3]) / span[3], rel=1e-9)
    # relative convention: a constant prediction never changes the command (stays open), while the
    # recorded opening drops by 1 every 10 frames (closes) and rises again (opens)
    pred_cmd = gripper_commands(np.full(FRAMES, action[6]), profile)
    true_cmd = gripper_commands(gt[:, 6], profile)
    assert set(pred_cmd) == {1.0} and 0.0 in true_cmd
    assert overall["gripper_agreement"] == pytest.approx((pred_cmd == true_cmd).mean())
