"""``magma-ros eval`` on bad input: missing topics, type mismatches, unreadable or truncated bags,
frames without an instruction or ground truth, bad messages, backend failures. Every problem is
named (topic and time) and counted in the report."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from magma_ros.actions import load_profile
from magma_ros.cli import main
from magma_ros.eval.bag import format_time, open_writer, typestore
from magma_ros.eval.sample_bag import (
    ACTION_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    SampleSpec,
    frame_index,
    ground_truth,
    write_sample_bag,
)
from magma_ros.policy import PolicyError, Prediction

T0 = 1_700_000_000_000_000_000
STEP = 200_000_000  # 5 Hz
MISSING = "/robot/teleop_action"  # a topic not in the sample bag


class BagBuilder:
    """A bag written message by message (image i at T0 + i * STEP, its action 20 ms later)."""

    def __init__(self, path: Path, storage: str = "mcap") -> None:
        self.ts = typestore()
        self.types = self.ts.types
        self._ctx = open_writer(path, storage)
        self.writer = self._ctx.__enter__()
        self.conns: dict[str, object] = {}
        self.path = path

    def conn(self, topic: str, msgtype: str):
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.ts)
        return self.conns[topic]

    def raw(self, topic: str, msgtype: str, t: int, data: bytes) -> None:
        self.writer.write(self.conn(topic, msgtype), t, data)

    def msg(self, topic: str, msgtype: str, t: int, msg) -> None:
        self.raw(topic, msgtype, t, self.ts.serialize_cdr(msg, msgtype))

    def image(self, i: int, encoding: str = "rgb8") -> None:
        T = self.types
        channels = 3 if encoding == "rgb8" else 2
        data = np.full(8 * 8 * channels, i, dtype=np.uint8)
        stamp = T["builtin_interfaces/msg/Time"](sec=0, nanosec=0)
        self.msg(IMAGE_TOPIC, "sensor_msgs/msg/Image", T0 + i * STEP, T["sensor_msgs/msg/Image"](
            header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam"), height=8, width=8, encoding=encoding,
            is_bigendian=0, step=8 * channels, data=data))

    def instruction(self, t: int, text: str) -> None:
        self.msg(INSTRUCTION_TOPIC, "std_msgs/msg/String", t, self.types["std_msgs/msg/String"](data=text))

    def action(self, i: int, values=None) -> None:
        T = self.types
        values = np.asarray(ground_truth(i, load_profile("bridge_orig")) if values is None else values,
                            dtype=np.float64)
        layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        self.msg(ACTION_TOPIC, "std_msgs/msg/Float64MultiArray", T0 + i * STEP + 20_000_000,
                 T["std_msgs/msg/Float64MultiArray"](layout=layout, data=values))

    def close(self) -> Path:
        self._ctx.__exit__(None, None, None)
        return self.path


def run(bag: Path, out: Path, *extra: str) -> int:
    return main(["eval", str(bag), "--action-topic", ACTION_TOPIC, "--backend", "fixed",
                 "--fixed-action", "0,0,0,0,0,0,1", "--out", str(out), "--quiet", "--no-plots", *extra])


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def good_bag(tmp_path_factory) -> Path:
    return write_sample_bag(tmp_path_factory.mktemp("good") / "bag", SampleSpec(frames=10, episodes=1))


def test_missing_topic_is_named_with_the_topics_present(good_bag, tmp_path, capsys):
    code = main(["eval", str(good_bag), "--action-topic", MISSING, "--backend", "fixed",
                 "--fixed-action", "0,0,0,0,0,0,1", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"ground-truth topic {MISSING} not found" in err
    assert f"{ACTION_TOPIC} (std_msgs/msg/Float64MultiArray)" in err and len(err.strip().splitlines()) == 1


def test_type_mismatch_names_topic_and_types(good_bag, tmp_path, capsys):
    assert run(good_bag, tmp_path / "o", "--image-topic", ACTION_TOPIC) == 2
    err = capsys.readouterr().err
    assert (f"image topic {ACTION_TOPIC} has type std_msgs/msg/Float64MultiArray, expected sensor_msgs/msg/Image "
            "or sensor_msgs/msg/CompressedImage") in err


@pytest.mark.parametrize("storage,suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_truncated_bag_is_reported(tmp_path, capsys, storage, suffix):
    bag = write_sample_bag(tmp_path / "bag", SampleSpec(frames=20, episodes=1, storage=storage))
    (data,) = [p for p in bag.iterdir() if p.suffix == suffix]
    os.truncate(data, data.stat().st_size // 2)
    assert run(bag, tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert f"bag {bag}" in err and ("cannot open" in err or "read failed" in err)
    assert "truncated or corrupt" in err
    if storage == "sqlite3":
        assert "mcap" not in err and "PRAGMA integrity_check" in err, err


def test_unreadable_bags(tmp_path, capsys):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, mapping\n")
    assert run(garbage, tmp_path / "o1") == 2
    assert f"bag {garbage}: cannot open" in capsys.readouterr().err
    plain = tmp_path / "notes.txt"
    plain.write_text("hello")
    assert run(plain, tmp_path / "o2") == 2
    assert "not a rosbag2 bag" in capsys.readouterr().err
    assert run(tmp_path / "absent", tmp_path / "o3") == 2
    assert "not found" in capsys.readouterr().err
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    assert run(empty_dir, tmp_path / "o4") == 2
    assert "no metadata.yaml" in capsys.readouterr().err


def test_frames_without_instruction_are_counted_and_named(tmp_path, capsys):
    b = BagBuilder(tmp_path / "bag")
    for i in range(10):
        if i == 4:
            b.instruction(T0 + i * STEP - 1_000_000, "pick up the cup")
        b.image(i)
        b.action(i)
    bag = b.close()
    assert run(bag, tmp_path / "o") == 0
    r = report(tmp_path / "o")
    assert r["frames"]["evaluated"] == 6 and r["frames"]["skipped"]["no_instruction"] == 4
    issue = r["issues"][0]
    assert issue["kind"] == "no_instruction" and issue["topic"] == IMAGE_TOPIC and issue["time_ns"] == T0
    err = capsys.readouterr().err
    assert f"warning: no_instruction: {IMAGE_TOPIC} at t={format_time(T0)}" in err
    assert "more no_instruction frames are counted in the report only" in err


def test_no_instruction_at_all_fails_after_writing_the_report(tmp_path, capsys):
    b = BagBuilder(tmp_path / "bag")
    b.instruction(T0 + 100 * STEP, "too late")
    for i in range(3):
        b.image(i)
        b.action(i)
    bag = b.close()
    assert run(bag, tmp_path / "o") == 2
    assert "no frame could be evaluated (no_instruction 3)" in capsys.readouterr().err
    assert report(tmp_path / "o")["frames"]["skipped"]["no_instruction"] == 3


def test_missing_and_bad_ground_truth_and_bad_images(tmp_path, capsys):
    b = BagBuilder(tmp_path / "bag", storage="sqlite3")
    b.instruction(T0 - 1, "stack the blocks")
    for i in range(12):
        b.image(i, encoding="16UC1" if i == 3 else "rgb8")
        if i in (5, 6):
            continue  # no recorded action for these frames
        b.action(i, values=[0.0] * 6 if i == 8 else None)
    b.raw(IMAGE_TOPIC, "sensor_msgs/msg/Image", T0 + 12 * STEP, b"\x00\x01garbage")
    bag = b.close()
    assert run(bag, tmp_path / "o", "--max-delay", "0.1") == 0
    r = report(tmp_path / "o")
    skipped = r["frames"]["skipped"]
    assert r["frames"]["images"] == 13
    assert skipped["bad_image"] == 1 and skipped["no_ground_truth"] == 3  # frames 5, 6 and 8
    assert skipped["bad_ground_truth"] == 1 and skipped["undecodable"] == 1
    assert r["frames"]["evaluated"] == 12 - 1 - 3
    kinds = {(i["kind"], i["time_ns"]) for i in r["issues"]}
    assert ("bad_image", T0 + 3 * STEP) in kinds
    assert ("no_ground_truth", T0 + 5 * STEP) in kinds
    assert ("bad_ground_truth", T0 + 8 * STEP + 20_000_000) in kinds
    assert ("undecodable", T0 + 12 * STEP) in kinds
    bad_gt = next(i for i in r["issues"] if i["kind"] == "bad_ground_truth")
    assert bad_gt["topic"] == ACTION_TOPIC and "expected 7 values" in bad_gt["message"]
    assert "unsupported encoding '16UC1'" in capsys.readouterr().err


def test_huge_ground_truth_is_skipped_not_turned_into_null_metrics(tmp_path, capsys):
    b = BagBuilder(tmp_path / "bag")
    b.instruction(T0 - 1, "stack the blocks")
    for i in range(6):
        b.image(i)
        b.action(i, values=[1e308, 0, 0, 0, 0, 0, 1] if i == 2 else None)
    bag = b.close()
    assert run(bag, tmp_path / "o", "--max-delay", "0.1") == 0
    r = report(tmp_path / "o")
    assert r["frames"]["skipped"]["bad_ground_truth"] == 1 and r["frames"]["evaluated"] == 5
    bad = next(i for i in r["issues"] if i["kind"] == "bad_ground_truth")
    assert bad["time_ns"] == T0 + 2 * STEP + 20_000_000 and "within +-1e+06" in bad["message"]
    metrics = r["overall"]
    assert all(v is not None for v in metrics["mse"].values()) and metrics["nrmse_mean_arm"] is not None
    assert "bad_ground_truth" in capsys.readouterr().err


def failing_policy(config, profile):
    class Flaky:
        vocab_size = 128000

        def predict(self, image, instruction):
            if frame_index(image) == 3:
                raise PolicyError("endpoint timed out")
            return Prediction(action=np.zeros(7))

        def close(self):
            pass

    return Flaky()


def test_backend_failures_are_counted(good_bag, tmp_path, capsys):
    code = main(["eval", str(good_bag), "--action-topic", ACTION_TOPIC, "--backend", "test_eval_errors:failing_policy",
                 "--out", str(tmp_path / "o"), "--quiet", "--no-plots"])
    assert code == 0
    r = report(tmp_path / "o")
    assert r["frames"]["skipped"]["policy_error"] == 1 and r["frames"]["evaluated"] == 9
    assert "endpoint timed out" in capsys.readouterr().err


def test_bad_options(good_bag, tmp_path, capsys):
    assert main(["eval", str(good_bag), "--backend", "fixed", "--fixed-action", "0,0,0,0,0,0,1", "--quiet"]) == 2
    assert "give the ground truth" in capsys.readouterr().err
    assert run(good_bag, tmp_path / "o", "--twist-topic", "/t") == 2
    assert "not both" in capsys.readouterr().err
    assert run(good_bag, tmp_path / "o", "--every", "0") == 2
    assert "--every must be >= 1" in capsys.readouterr().err
