"""``magma-ros stats``: statistics equal numpy's on the actions eval scores against, counts,
control rate, gripper proposal, the twist form, published dataset_statistics.json files, and every
bad input as one line with exit status 2 and nothing written."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from magma_ros.actions import load_profile
from magma_ros.actions.tokenizer import AXIS_NAMES
from magma_ros.cli import main
from magma_ros.eval.bag import open_writer, typestore
from magma_ros.eval.sample_bag import (
    ACTION_TOPIC,
    GRIPPER_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    TWIST_TOPIC,
    SampleSpec,
    ground_truth,
    write_sample_bag,
)

T0 = 1_700_000_000_000_000_000
DELAY_NS = 20_000_000  # an action is recorded 20 ms after its image


def write_bag(path: Path, actions: np.ndarray, instructions: list[str | None], rate_hz: float,
              unrecorded: frozenset[int] = frozenset()) -> Path:
    """Image i at T0 + i / rate, its action (Float64MultiArray) 20 ms later unless i is
    ``unrecorded``; an instruction message before the first frame and wherever ``instructions[i]``
    changes (None: no instruction yet)."""
    ts = typestore()
    T = ts.types
    with open_writer(path) as writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=ts) for topic, msgtype in (
            (IMAGE_TOPIC, "sensor_msgs/msg/Image"), (INSTRUCTION_TOPIC, "std_msgs/msg/String"),
            (ACTION_TOPIC, "std_msgs/msg/Float64MultiArray"))}

        def write(topic: str, t: int, msg) -> None:
            writer.write(conns[topic], t, ts.serialize_cdr(msg, conns[topic].msgtype))

        for i, action in enumerate(actions):
            t = T0 + int(round(i * 1e9 / rate_hz))
            if instructions[i] is not None and (i == 0 or instructions[i] != instructions[i - 1]):
                write(INSTRUCTION_TOPIC, t - 1_000_000, T["std_msgs/msg/String"](data=instructions[i]))
            stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
            write(IMAGE_TOPIC, t, T["sensor_msgs/msg/Image"](
                header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam"), height=4, width=4, encoding="rgb8",
                is_bigendian=0, step=12, data=np.full(48, i % 256, dtype=np.uint8)))
            if i in unrecorded:
                continue
            layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
            write(ACTION_TOPIC, t + DELAY_NS, T["std_msgs/msg/Float64MultiArray"](
                layout=layout, data=np.asarray(action, dtype=np.float64)))
    return path


def random_actions(n: int, seed: int, binary_gripper: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    actions = rng.normal(0.0, [0.01, 0.02, 0.015, 0.05, 0.04, 0.1, 1.0], size=(n, 7))
    actions[:, 6] = rng.integers(0, 2, n) if binary_gripper else rng.uniform(0.0, 1.0, n)
    return actions


def stats_cli(*args: str) -> int:
    return main(["stats", *map(str, args), "--quiet"])


def normalization(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["normalization"]


def test_statistics_equal_numpy_on_every_recorded_action(tmp_path, capsys):
    a1, a2 = random_actions(60, 1), random_actions(25, 2)
    bag1 = write_bag(tmp_path / "run1", a1, ["pick"] * 20 + ["place"] * 20 + ["pick"] * 20, rate_hz=10.0)
    bag2 = write_bag(tmp_path / "run2", a2, ["wipe"] * 25, rate_hz=10.0)
    out = tmp_path / "my_arm.yaml"
    assert stats_cli(bag1, bag2, "--action-topic", ACTION_TOPIC, "--out", out, "--base-frame", "arm_base") == 0
    actions = np.concatenate([a1, a2])
    norm = normalization(out)
    for key, expected in (("q01", np.percentile(actions, 1, axis=0)), ("q99", np.percentile(actions, 99, axis=0)),
                          ("mean", actions.mean(axis=0)), ("std", actions.std(axis=0)),
                          ("min", actions.min(axis=0)), ("max", actions.max(axis=0))):
        assert norm[key] == expected.tolist(), key  # exactly: the file holds every digit
    assert norm["mask"] == [True] * 6 + [False]
    assert norm["num_transitions"] == 85
    assert norm["num_trajectories"] == 4  # pick, place, pick again (a new episode), wipe
    profile = load_profile(out)
    assert (profile.name, profile.base_frame, profile.control_rate_hz) == ("my_arm", "arm_base", 10.0)
    assert profile.gripper.mode == "binary"
    assert profile.stats.q01 == tuple(np.percentile(actions, 1, axis=0))
    assert profile.limits.max_linear_step >= max(np.abs(norm["q01"][:3]).max(), np.abs(norm["q99"][:3]).max())
    printed = capsys.readouterr().out
    assert "control_rate_hz: 10 (estimated from the recorded action timing: median interval 0.1 s)" in printed
    assert "85 actions in 4 episode(s)" in printed and f"wrote {out}" in printed
    assert "gripper: binary (recorded values are only 0 and 1)" in printed


def test_the_actions_are_the_ones_eval_scores_against(tmp_path):
    """A messy recording: frames before the first instruction, NaN actions (their frames are skipped,
    as in eval), frames whose action was never recorded, an
    instruction that changes and comes back. The statistics are those of eval's truth column."""
    actions = random_actions(60, 9)
    actions[[10, 11, 30], 2] = np.nan
    instructions = [None] * 5 + ["pick"] * 20 + ["place"] * 15 + ["pick"] * 20
    bag = write_bag(tmp_path / "messy", actions, instructions, rate_hz=4.0, unrecorded=frozenset({20, 45, 59}))
    out = tmp_path / "arm.yaml"
    assert stats_cli(bag, "--action-topic", ACTION_TOPIC, "--out", out) == 0
    assert main(["eval", str(bag), "--robot", str(out), "--action-topic", ACTION_TOPIC, "--backend", "fixed",
                 "--fixed-action", "0,0,0,0,0,0,1", "--out", str(tmp_path / "eval"), "--quiet", "--no-plots"]) == 0
    with (tmp_path / "eval" / "frames.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    truth = np.array([[float(row[f"true_{axis}"]) for axis in AXIS_NAMES] for row in rows])
    norm = normalization(out)
    assert norm["num_transitions"] == len(rows) == 60 - 5 - 3 - 1  # no instruction: 5; NaN: 3; frame 59: no action
    assert norm["num_trajectories"] == len({row["episode"] for row in rows}) == 3
    assert norm["q01"] == np.percentile(truth, 1, axis=0).tolist()
    assert norm["q99"] == np.percentile(truth, 99, axis=0).tolist()
    assert norm["mean"] == truth.mean(axis=0).tolist()


def test_fixed_instruction_makes_one_episode_per_bag_and_rate_follows_timing(tmp_path):
    actions = random_actions(30, 3, binary_gripper=False)
    bag = write_bag(tmp_path / "run", actions, ["a"] * 10 + ["b"] * 20, rate_hz=3.0)
    out = tmp_path / "arm.yaml"
    assert stats_cli(bag, "--action-topic", ACTION_TOPIC, "--instruction", "do it", "--out", out,
                     "--name", "slow_arm") == 0
    data = yaml.safe_load(out.read_text())
    assert data["normalization"]["num_trajectories"] == 1
    assert data["control_rate_hz"] == 3.0
    assert data["gripper"]["mode"] == "continuous"
    assert (data["gripper"]["closed_value"], data["gripper"]["open_value"]) == (0.0, 1.0)
    assert load_profile(out).name == "slow_arm"


def test_nan_actions_are_skipped_counted_and_reported(tmp_path, capsys):
    actions = random_actions(40, 4)
    actions[[3, 17, 18], 1] = np.nan
    actions[25, 6] = np.inf
    bag = write_bag(tmp_path / "run", actions, ["x"] * 40, rate_hz=10.0)
    out = tmp_path / "arm.yaml"
    # a frame whose action is bad finds no other one within 50 ms: it has no ground truth
    assert stats_cli(bag, "--action-topic", ACTION_TOPIC, "--out", out, "--max-delay", "0.05") == 0
    finite = actions[np.all(np.isfinite(actions), axis=1)]
    norm = normalization(out)
    assert norm["num_transitions"] == 36
    assert norm["q99"] == np.percentile(finite, 99, axis=0).tolist()
    captured = capsys.readouterr()
    assert "skipped 4 ground-truth message(s) that are not usable actions (NaN" in captured.out
    assert "warning: bad_ground_truth: 4 skipped" in captured.err


def test_sqlite3_bags_are_read_too(tmp_path):
    bag = write_sample_bag(tmp_path / "sqlite", SampleSpec(frames=12, episodes=2, width=8, height=8, storage="sqlite3"))
    out = tmp_path / "arm.yaml"
    assert stats_cli(bag, "--action-topic", ACTION_TOPIC, "--out", out) == 0
    expected = np.stack([ground_truth(i, load_profile("bridge_orig")) for i in range(12)])
    assert normalization(out)["min"] == expected.min(axis=0).tolist()
    assert normalization(out)["num_trajectories"] == 2


def test_twist_form_gives_the_deltas_of_the_action_form(tmp_path):
    bag = write_sample_bag(tmp_path / "sample", SampleSpec(frames=30, episodes=3, width=8, height=8))
    arrays, twists = tmp_path / "arrays.yaml", tmp_path / "twists.yaml"
    assert stats_cli(bag, "--action-topic", ACTION_TOPIC, "--out", arrays) == 0
    assert stats_cli(bag, "--twist-topic", TWIST_TOPIC, "--gripper-topic", GRIPPER_TOPIC, "--out", twists) == 0
    a, t = normalization(arrays), normalization(twists)
    expected = np.stack([ground_truth(i, load_profile("bridge_orig")) for i in range(30)])
    assert a["q01"] == np.percentile(expected, 1, axis=0).tolist()
    for key in ("q01", "q99", "mean", "std", "min", "max"):  # twist = delta / dt and back
        assert np.allclose(t[key][:6], a[key][:6], rtol=0, atol=1e-12), key
    assert t["num_transitions"] == a["num_transitions"] == 30
    assert t["num_trajectories"] == 3
    assert yaml.safe_load(twists.read_text())["control_rate_hz"] == 5.0
    doubled = tmp_path / "doubled.yaml"  # twists held for 0.4 s instead of the estimated 0.2 s
    assert stats_cli(bag, "--twist-topic", TWIST_TOPIC, "--gripper-topic", GRIPPER_TOPIC, "--control-period", "0.4",
                     "--out", doubled) == 0
    assert np.allclose(normalization(doubled)["max"][:3], 2 * np.asarray(a["max"][:3]), rtol=0, atol=1e-12)


BRIDGE_PUBLISHED = {
    "action": {"mean": [0.00023, 0.00013, -0.00012, -0.00015, -0.00039, 0.00023, 0.5764],
               "std": [0.0097, 0.0134, 0.0126, 0.0285, 0.0306, 0.0770, 0.4974],
               "max": [0.4157, 0.4037, 0.3716, 6.2729, 1.5675, 6.2779, 1.0],
               "min": [-0.4007, -0.1392, -0.4015, -6.2793, -1.5707, -6.2758, 0.0],
               "q01": list(load_profile("bridge_orig").stats.q01), "q99": list(load_profile("bridge_orig").stats.q99),
               "mask": [True] * 6 + [False]},
    "proprio": {"mean": [0.0] * 7, "std": [0.0] * 7},
    "num_transitions": 2135463, "num_trajectories": 60064,
}


def test_published_dataset_statistics_become_a_profile(tmp_path, capsys):
    path = tmp_path / "dataset_statistics.json"
    path.write_text(json.dumps({"bridge_orig": BRIDGE_PUBLISHED, "fractal20220817_data": BRIDGE_PUBLISHED}))
    out = tmp_path / "bridge.yaml"
    assert stats_cli("--from-dataset-statistics", path, "--key", "bridge_orig", "--control-rate", "5",
                     "--out", out) == 0
    profile = load_profile(out)
    builtin = load_profile("bridge_orig")
    assert (profile.stats.mask, profile.stats.q01, profile.stats.q99) == (builtin.stats.mask, builtin.stats.q01,
                                                                         builtin.stats.q99)
    assert profile.stats.max == tuple(BRIDGE_PUBLISHED["action"]["max"])
    assert (profile.stats.num_transitions, profile.stats.num_trajectories) == (2135463, 60064)
    assert profile.gripper.mode == "binary" and profile.control_rate_hz == 5.0
    assert "2135463 transitions in 60064 trajectories" in capsys.readouterr().out


def test_a_model_config_with_norm_stats_is_read_too(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"architectures": ["X"], "norm_stats": {"bridge_orig": BRIDGE_PUBLISHED}}))
    out = tmp_path / "p.yaml"
    assert stats_cli("--from-dataset-statistics", path, "--key", "bridge_orig", "--control-rate", "5",
                     "--out", out) == 0
    assert load_profile(out).stats.q99 == load_profile("bridge_orig").stats.q99


def test_overwrite_replaces_the_file_and_leaves_no_temporary(tmp_path):
    bag = write_bag(tmp_path / "run", random_actions(10, 5), ["x"] * 10, rate_hz=5.0)
    out = tmp_path / "arm.yaml"
    out.write_text("old\n")
    assert stats_cli(bag, "--action-topic", ACTION_TOPIC, "--out", out, "--overwrite") == 0
    assert load_profile(out).name == "arm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arm.yaml", "run"]


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bags")
    nan = random_actions(6, 6)
    nan[:, 0] = np.nan
    garbage = root / "garbage.mcap"
    garbage.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 64)
    stats_path = root / "dataset_statistics.json"
    stats_path.write_text(json.dumps({"bridge_orig": BRIDGE_PUBLISHED, "other": BRIDGE_PUBLISHED}))
    bad_stats = root / "bad_statistics.json"
    bad_stats.write_text(json.dumps({"bridge_orig": {"action": {**BRIDGE_PUBLISHED["action"], "p50": [0.0] * 7}}}))
    (root / "not_json.json").write_text("{")
    good = write_bag(root / "good", random_actions(10, 7), ["x"] * 10, rate_hz=5.0)
    cut = root / "cut"  # a recording killed mid-write: the MCAP's second half is missing
    cut.mkdir()
    (cut / "metadata.yaml").write_bytes((good / "metadata.yaml").read_bytes())
    for mcap in good.glob("*.mcap"):
        (cut / mcap.name).write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    return {"good": good, "cut": cut,
            "nan": write_bag(root / "nan", nan, ["x"] * 6, rate_hz=5.0),
            "one": write_bag(root / "one", random_actions(1, 8), ["x"], rate_hz=5.0),
            "garbage": garbage, "stats": stats_path, "bad_stats": bad_stats, "not_json": root / "not_json.json",
            "existing": _existing(root / "existing.yaml")}


def _existing(path: Path) -> Path:
    path.write_text("keep me\n")
    return path


TOPIC = ("--action-topic", ACTION_TOPIC)
BAD_INPUTS = {
    "no ground truth topic given": (["{good}"], "give the ground truth: --action-topic TOPIC"),
    "topic not in the bag": (["{good}", "--action-topic", "/nope"], "ground-truth topic /nope not found"),
    "twist without gripper": (["{good}", "--twist-topic", TWIST_TOPIC], "go together"),
    "unreadable bag": (["{garbage}", *TOPIC], "cannot open"),
    "truncated bag": (["{cut}", *TOPIC], "bag {cut}: cannot open"),
    "not a bag": (["{stats}", *TOPIC], "not a rosbag2 bag"),
    "missing bag": (["{good}_nope", *TOPIC], "not found"),
    "only NaN actions": (["{nan}", *TOPIC], "no recorded action to compute statistics from"),
    "one action: no rate": (["{one}", *TOPIC], "control rate: cannot be estimated from fewer than two actions"),
    "image topic missing": (["{good}", *TOPIC, "--image-topic", "/cam"], "image topic /cam not found"),
    "no bags": ([*TOPIC], "give at least one BAG"),
    "bags and published file": (["{good}", "--from-dataset-statistics", "{stats}", "--key", "bridge_orig",
                                 "--control-rate", "5"], "not both"),
    "key without file": (["{good}", *TOPIC, "--key", "x"], "--key goes with --from-dataset-statistics"),
    "published without key": (["--from-dataset-statistics", "{stats}", "--control-rate", "5"], "needs --key"),
    "published without rate": (["--from-dataset-statistics", "{stats}", "--key", "bridge_orig"],
                               "needs --control-rate"),
    "published key missing": (["--from-dataset-statistics", "{stats}", "--key", "libero", "--control-rate", "5"],
                              "no dataset 'libero' (keys present: bridge_orig, other)"),
    "published unknown stats key": (["--from-dataset-statistics", "{bad_stats}", "--key", "bridge_orig",
                                     "--control-rate", "5"], "bridge_orig.action: unknown key 'p50'"),
    "published not JSON": (["--from-dataset-statistics", "{not_json}", "--key", "x", "--control-rate", "5"],
                           "not valid JSON"),
    "published file missing": (["--from-dataset-statistics", "{stats}_nope", "--key", "x", "--control-rate", "5"],
                               "cannot read"),
    "negative rate": (["{good}", *TOPIC, "--control-rate", "-5"], "--control-rate must be a finite number > 0"),
    "bad workspace": (["{good}", *TOPIC, "--workspace-min", "0,0"], "--workspace-min: expected three"),
    "workspace min above max": (["{good}", *TOPIC, "--workspace-min", "1,1,1"], "workspace.min[0]"),
    "control period without twists": (["{good}", *TOPIC, "--control-period", "0.2"], "goes with --twist-topic"),
    "empty name": (["{good}", *TOPIC, "--name", " "], "--name: give a non-empty profile name"),
}


@pytest.mark.parametrize("argv,message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_exit_2_and_nothing_written(bags, tmp_path, capsys, argv, message):
    out = tmp_path / "arm.yaml"
    code = stats_cli(*[a.format(**bags) for a in argv], "--out", out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("magma-ros stats: error: ") and message.format(**bags) in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_out_is_refused_and_kept(bags, capsys):
    code = stats_cli(bags["good"], *TOPIC, "--out", bags["existing"])
    assert code == 2
    assert "already exists (give --overwrite to replace it)" in capsys.readouterr().err
    assert bags["existing"].read_text() == "keep me\n"


def test_unwritable_out_is_one_line(bags, tmp_path, capsys):
    code = stats_cli(bags["good"], *TOPIC, "--out", tmp_path / "no_dir" / "arm.yaml")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not an existing directory" in err[0]


def test_without_the_eval_extra_it_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['rosbags'] = None; from magma_ros.cli import main; "
            f"sys.exit(main(['stats', 'run1', '--action-topic', '/a', '--out', {str(tmp_path / 'p.yaml')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("magma-ros stats: error: reading bags needs the eval extra (rosbags): "
                                     "pip install 'magma_ros[eval]'")
