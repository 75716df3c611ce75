"""Normalization stats and robot profiles: validation errors name the file, key and index."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from magma_ros.actions import NormalizationStats, ProfileError, StatsError, builtin_profile_names, load_profile

BRIDGE = load_profile("bridge_orig")
GOOD_STATS = BRIDGE.stats.as_dict()


def write_profile(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(Path(BRIDGE.source).read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "my_robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtin_profiles():
    assert {"bridge_orig", "google_robot"} <= set(builtin_profile_names())
    google = load_profile("google_robot")
    assert (BRIDGE.control_rate_hz, google.control_rate_hz) == (5.0, 3.0)
    assert (BRIDGE.gripper.mode, google.gripper.mode, google.gripper.sticky_repeats) == ("binary", "relative", 15)
    assert (BRIDGE.limits.max_linear_step, BRIDGE.limits.max_angular_step) == (0.05, 0.25)
    assert BRIDGE.image_size == (256, 256)
    assert BRIDGE.prompt("pick up the spoon") == "What action should the robot take to pick up the spoon?"
    assert BRIDGE.stats.mask == (True,) * 6 + (False,)


def test_profile_by_path_is_equivalent(tmp_path):
    assert load_profile(write_profile(tmp_path)).stats == BRIDGE.stats


@pytest.mark.parametrize("mapping, message", [
    ({**GOOD_STATS, "q01": GOOD_STATS["q01"][:6]}, r"stats\.q01: expected exactly 7 values, got 6"),
    ({**GOOD_STATS, "q99": GOOD_STATS["q99"][:6] + [float("nan")]}, r"stats\.q99\[6\]: must be finite"),
    ({**GOOD_STATS, "q01": GOOD_STATS["q01"][:2] + ["a"] + GOOD_STATS["q01"][3:]},
     r"stats\.q01\[2\]: expected a number"),
    ({**GOOD_STATS, "mask": [True] * 6 + [1]}, r"stats\.mask\[6\]: expected true or false, got 1"),
    ({**GOOD_STATS, "q01": [1.0] + GOOD_STATS["q01"][1:]}, r"stats\.q01\[0\]: 1\.0 is greater than q99\[0\]"),
    ({"mask": GOOD_STATS["mask"]}, r"stats: missing key\(s\) q01, q99"),
    ([1, 2], r"stats: expected a mapping"),
    ({**GOOD_STATS, "q01": "abc"}, r"stats\.q01: expected a list of 7 values"),
])
def test_stats_validation(mapping, message):
    with pytest.raises(StatsError, match=message):
        NormalizationStats.from_mapping(mapping)


def test_stats_files_yaml_and_json(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(GOOD_STATS))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"normalization": GOOD_STATS}))
    assert NormalizationStats.from_file(tmp_path / "s.json") == BRIDGE.stats
    assert NormalizationStats.from_file(tmp_path / "s.yaml") == BRIDGE.stats
    (tmp_path / "bad.yaml").write_text("q01: [1, 2\n")
    with pytest.raises(StatsError, match=r"bad\.yaml: not valid YAML"):
        NormalizationStats.from_file(tmp_path / "bad.yaml")
    with pytest.raises(StatsError, match=r"missing\.yaml: cannot read stats file"):
        NormalizationStats.from_file(tmp_path / "missing.yaml")


def test_normalize_inverts_unnormalize():
    n = np.linspace(-1, 1, 7)
    np.testing.assert_allclose(BRIDGE.stats.normalize(BRIDGE.stats.unnormalize(n)), n, atol=1e-12)


@pytest.mark.parametrize("changes, message", [
    ({"control_rate_hz": None}, r"control_rate_hz: required key missing"),
    ({"control_rate_hz": -5}, r"control_rate_hz: must be positive"),
    ({"colour": "red"}, r"colour: unknown key"),
    ({"normalization": {**GOOD_STATS, "q99": [-1.0] * 7}}, r"normalization\.q01\[0\]: .* greater than q99\[0\]"),
    ({"gripper": {"mode": "magnetic"}}, r"gripper\.mode: must be binary, continuous or relative"),
    ({"gripper": {"mode": "relative", "sticky_repeats": -1}}, r"gripper\.sticky_repeats: expected a whole number"),
    ({"limits": {"max_linear_step": 0.05}}, r"limits\.max_angular_step: required key missing"),
    ({"workspace": {"min": [0, 0, 0], "max": [1, 1]}}, r"workspace\.max: expected \[x, y, z\]"),
    ({"workspace": {"min": [0, 2, 0], "max": [1, 1, 1]}}, r"workspace\.min\[1\]: must be below workspace\.max\[1\]"),
    ({"image_size": [256]}, r"image_size: expected \[width, height\]"),
    ({"prompt_template": "Do it"}, r"prompt_template: must be a string containing \{instruction\}"),
    ({"base_frame": ""}, r"base_frame: expected a non-empty string"),
])
def test_profile_errors_name_file_and_key(tmp_path, changes, message):
    path = write_profile(tmp_path, **changes)
    with pytest.raises(ProfileError, match=message) as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_broken_yaml_and_unknown_names(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"broken\.yaml: not valid YAML"):
        load_profile(path)
    with pytest.raises(ProfileError, match=r"unknown robot 'widowx_9000' \(built-in: .*bridge_orig"):
        load_profile("widowx_9000")
    with pytest.raises(ProfileError, match=r"nope\.yaml: robot profile file not found"):
        load_profile(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ProfileError, match=r"list\.yaml: expected a mapping at the top level"):
        load_profile(tmp_path / "list.yaml")


SUBSTITUTION_ONLY = r"prompt_template: only \{instruction\} may be substituted, without format spec"


@pytest.mark.parametrize("changes, message", [
    ({"prompt_template": "{instruction} {instruction:>20}"}, SUBSTITUTION_ONLY + r".*'\{instruction:>20\}'"),
    ({"prompt_template": "Do {instruction!r}"}, SUBSTITUTION_ONLY + r".*'\{instruction!r\}'"),
    ({"prompt_template": "Do {instruction.__class__}"}, SUBSTITUTION_ONLY + r".*'\{instruction\.__class__\}'"),
    ({"prompt_template": "Do {instruction[0]}"}, SUBSTITUTION_ONLY + r".*'\{instruction\[0\]\}'"),
    ({"prompt_template": "Do {instruction} {0}"}, SUBSTITUTION_ONLY + r".*'\{0\}'"),
    ({"prompt_template": "Do {instruction} twice: {instruction}"},
     r"prompt_template: .*exactly once, found it 2 times"),
    ({"prompt_template": "Do {instruction} }"}, r"prompt_template: Single '\}' encountered"),
    ({"prompt_template": "{instruction}" + "x" * 2000},
     r"prompt_template: 2013 characters, more than the limit of 2000"),
    ({"prompt_template": 5}, r"prompt_template: must be a string containing \{instruction\}, got int"),
    ({"base_frame": "/base_link"}, r"base_frame: a tf2 frame id has no leading '/'"),
    ({"base_frame": "base link"}, r"base_frame: whitespace or control character ' '"),
    ({"base_frame": "base\x07link"}, r"base_frame: whitespace or control character '\\x07'"),
    ({"base_frame": "b" * 257}, r"base_frame: 257 characters, more than 256"),
    ({"image_size": [15, 256]}, r"image_size: each side must be 16\.\.4096 pixels, got \[15, 256\]"),
    ({"image_size": [256, 4097]}, r"image_size: each side must be 16\.\.4096 pixels"),
    ({"image_size": [256, True]}, r"image_size: expected \[width, height\] as two integers"),
])
def test_prompt_frame_and_image_size_are_bounded(tmp_path, changes, message):
    path = write_profile(tmp_path, **changes)
    with pytest.raises(ProfileError, match=message) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_literal_braces_edges_and_bounds_are_accepted(tmp_path):
    template = "{{robot}} should {instruction} " + "." * (2000 - 31)
    profile = load_profile(write_profile(tmp_path, prompt_template=template, base_frame="arm/" + "b" * 252,
                                         image_size=[16, 4096]))
    assert len(profile.prompt_template) == 2000
    assert profile.prompt("wave").startswith("{robot} should wave .")
    assert (profile.base_frame, profile.image_size) == ("arm/" + "b" * 252, (16, 4096))
