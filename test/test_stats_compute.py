"""The pure parts of ``magma-ros stats``: statistics, control rate, gripper and limit proposals,
published statistics and the profile text (it loads back exactly, whatever the strings and floats)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from magma_ros.actions import load_profile
from magma_ros.actions.dataset_stats import (
    action_statistics,
    estimate_control_rate,
    propose_gripper,
    propose_gripper_from_summary,
    propose_limits,
    published_statistics,
)
from magma_ros.actions.errors import ProfileError, StatsError
from magma_ros.actions.profile_writer import profile_text, stats_section, write_atomically


def test_statistics_are_numpys():
    actions = np.random.default_rng(0).normal(size=(500, 7))
    stats = action_statistics(actions, num_trajectories=7)
    assert stats.q01 == tuple(np.percentile(actions, 1, axis=0))
    assert stats.q01 == tuple(np.quantile(actions, 0.01, axis=0))  # OpenVLA's spelling, the same numbers
    assert stats.q99 == tuple(np.percentile(actions, 99, axis=0))
    assert stats.std == tuple(np.std(actions, axis=0))
    assert (stats.mask, stats.num_transitions, stats.num_trajectories) == ((True,) * 6 + (False,), 500, 7)


@pytest.mark.parametrize("actions,message", [
    (np.zeros((0, 7)), "none to compute statistics from"),
    (np.zeros((3, 6)), "expected an (N, 7) array"),
    (np.full((3, 7), np.nan), "every value must be finite"),
])
def test_statistics_refuse_what_is_not_actions(actions, message):
    with pytest.raises(StatsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        action_statistics(actions, 1)


def test_control_rate_is_the_median_interval_across_episode_pauses():
    first = 1_000 + np.arange(20) * 100_000_000  # 10 Hz ...
    second = first[-1] + 5_000_000_000 + np.arange(20) * 100_000_000  # ... a 5 s pause, 10 Hz again
    jitter = np.array([0, 99_000_000, 201_000_000, 300_000_000])
    assert estimate_control_rate([np.concatenate([first, second]), jitter]) == (10.0, 0.1)
    with pytest.raises(StatsError, match="fewer than two actions"):
        estimate_control_rate([np.array([5]), np.array([7, 7])])


@pytest.mark.parametrize("values,mode", [
    ([0.0, 1.0, 1.0, 0.0], "binary"), ([1.0, 1.0], "binary"), ([0.0, 0.5, 1.0], "continuous"),
    ([0.02, 0.08], "continuous"), ([-1.0, 1.0], "continuous"),
])
def test_gripper_mode_is_binary_only_for_zeros_and_ones(values, mode):
    proposal = propose_gripper(values)
    assert proposal["mode"] == mode
    if mode == "continuous":  # a range holding every value and [0, 1]
        assert proposal["closed_value"] <= min(min(values), 0.0) and proposal["open_value"] >= max(max(values), 1.0)


def test_limits_cover_every_decodable_action():
    stats = load_profile("bridge_orig").stats
    limits = propose_limits(stats)
    assert limits == {"max_linear_step": 0.053, "max_angular_step": 0.26}  # 0.0417 and 0.207 plus 25 %, rounded up
    still = action_statistics(np.zeros((4, 7)), 1)
    assert propose_limits(still) == {"max_linear_step": 0.001, "max_angular_step": 0.001}


def test_published_statistics_and_their_gripper():
    bridge = load_profile("bridge_orig").stats
    entry = {"action": {**bridge.as_dict(), "min": [-1.0] * 6 + [0.0], "max": [1.0] * 7}, "num_transitions": 10,
             "num_trajectories": 2, "proprio": {"q01": [0.0] * 8}}
    stats = published_statistics({"bridge_orig": entry}, "bridge_orig", "f.json")
    assert (stats.q99, stats.num_transitions, stats.num_trajectories) == (bridge.q99, 10, 2)
    assert propose_gripper_from_summary(stats)["mode"] == "binary"
    with pytest.raises(StatsError, match=r"f.json: no dataset 'x' \(keys present: bridge_orig\)"):
        published_statistics({"bridge_orig": entry}, "x", "f.json")
    with pytest.raises(StatsError, match="f.json: bridge_orig: expected a mapping with an 'action' section"):
        published_statistics({"bridge_orig": [1]}, "bridge_orig", "f.json")
    with pytest.raises(StatsError, match=r"f.json: bridge_orig.action: missing key\(s\) mask"):
        published_statistics({"bridge_orig": {"action": {"q01": [0] * 7, "q99": [0] * 7}}}, "bridge_orig", "f.json")


def profile(**changes):
    stats = action_statistics(np.random.default_rng(1).normal(size=(50, 7)) * 1e-5, 1)
    data = {"name": "arm", "description": "d", "control_rate_hz": 5.0, "base_frame": "base_link",
            "image_size": [256, 256], "prompt_template": "What action should the robot take to {instruction}?",
            "normalization": stats_section(stats), "gripper": propose_gripper([0.0, 1.0]),
            "limits": propose_limits(stats), "workspace": {"min": [0.1, -0.3, 0.02], "max": [0.5, 0.3, 0.4]}}
    return {**data, **changes}


text_values = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(str.strip)


@settings(max_examples=100, deadline=None)
@given(text_values, text_values, st.floats(min_value=1e-300, max_value=1e6))
def test_profile_text_loads_back_exactly(name, description, rate):
    data = profile(name=name, description=description, control_rate_hz=rate)
    text, loaded = profile_text(data, f"header with {name}\nsecond line")
    assert yaml.safe_load(text) == data
    assert (loaded.name, loaded.description, loaded.control_rate_hz) == (name, description, rate)
    assert all(line.startswith("#") for line in text.splitlines()[:2])


def test_small_floats_stay_floats():
    text, loaded = profile_text(profile(limits={"max_linear_step": 1e-05, "max_angular_step": 2e-07}), "h")
    assert "max_linear_step: 1.0e-05" in text
    assert loaded.limits.max_linear_step == 1e-05


def test_an_invalid_profile_is_not_written(tmp_path):
    with pytest.raises(ProfileError, match="workspace.min"):
        profile_text(profile(workspace={"min": [1.0, 0.0, 0.0], "max": [0.5, 0.3, 0.4]}), "h")
    path = tmp_path / "p.yaml"
    write_atomically(path, "a: 1\n", overwrite=False)
    with pytest.raises(ProfileError, match="already exists"):
        write_atomically(path, "a: 2\n", overwrite=False)
    write_atomically(path, "a: 3\n", overwrite=True)
    assert path.read_text() == "a: 3\n" and [p.name for p in tmp_path.iterdir()] == ["p.yaml"]
