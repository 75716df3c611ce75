"""`magma-ros decode` as a user runs it: JSON on stdout, one-line errors with exit status 2."""
from __future__ import annotations

import json

import pytest
import yaml

from magma_ros.actions import load_profile

IDS = "127843,127876,127917,127872,127852,127874,127872"
PUBLISHED = {
    "x": 0.006277765673749571, "y": -0.0017191617944661772, "z": -0.004658273500116439,
    "roll": 0.0004997134208677839, "pitch": 0.00591804922503579, "yaw": -0.004902105561658515,
    "gripper": 0.0,
}


def test_text_with_tokenizer(decode, llama3_tokenizer_path):
    result = decode("--robot", "bridge_orig", "--tokenizer", str(llama3_tokenizer_path), "立刻ẳn сирiв衝ційнаiв")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == PUBLISHED
    assert list(json.loads(result.stdout)) == ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]


def test_ids_with_stats_file_and_profile_path(decode, tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps(load_profile("bridge_orig").stats.as_dict()))
    by_stats = decode("--stats", str(stats), "--ids", IDS)
    by_path = decode("--robot", load_profile("bridge_orig").source, "--ids", IDS)
    assert json.loads(by_stats.stdout) == PUBLISHED
    assert json.loads(by_path.stdout) == PUBLISHED


def test_google_robot_differs(decode):
    result = decode("--robot", "google_robot", "--ids", IDS)
    assert result.returncode == 0
    assert json.loads(result.stdout)["x"] != PUBLISHED["x"]


@pytest.mark.parametrize("args, message", [
    (("--robot", "widowx_9000", "--ids", IDS), "unknown robot 'widowx_9000'"),
    (("--robot", "bridge_orig", "--ids", "127843,127876"), "expected 7 action ids per action"),
    (("--robot", "bridge_orig", "--ids", "127843,127876,15339,127872,127852,127874,127872"),
     "not action tokens (valid ids are 127744..127999): 15339 at index 2"),
    (("--robot", "bridge_orig", "--ids", "12x"), "--ids: expected comma-separated integers"),
    (("--robot", "bridge_orig", "--tokenizer", "/nonexistent/tok.json", "hello"),
     "tokenizer not found: /nonexistent/tok.json"),
    (("--robot", "bridge_orig", "hello"), "decoding TEXT needs --tokenizer"),
    (("--ids", IDS), "give --robot NAME|PATH or --stats FILE"),
])
def test_user_errors_exit_2_with_one_line(decode, args, message):
    result = decode(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_non_action_text_and_malformed_stats(decode, tmp_path, llama3_tokenizer_path):
    result = decode("--robot", "bridge_orig", "--tokenizer", str(llama3_tokenizer_path), "move left")
    assert result.returncode == 2 and "text 'move left': expected exactly 7 action tokens" in result.stderr
    bad = tmp_path / "stats.yaml"
    bad.write_text(yaml.safe_dump({"mask": [True] * 7, "q01": [0.0] * 7, "q99": [1.0] * 6}))
    result = decode("--stats", str(bad), "--ids", IDS)
    assert result.returncode == 2
    assert f"{bad}.q99: expected exactly 7 values, got 6" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("ids", [IDS.replace(",", ",,", 1), IDS + ",", "," + IDS, IDS.replace(",", ", ,", 1)])
def test_ids_with_an_empty_item_are_refused(decode, ids):
    result = decode("--robot", "bridge_orig", "--ids", ids)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ids: empty item" in lines[0], result.stderr


def test_ids_separated_by_spaces_still_decode(decode):
    result = decode("--robot", "bridge_orig", "--ids", IDS.replace(",", ", "))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(decode("--robot", "bridge_orig", "--ids", IDS).stdout)


def test_profile_with_a_huge_format_spec_fails_fast_with_one_line(decode, tmp_path):
    """Validation parses the template and never formats it: this one used to allocate ~19.5 GB."""
    profile = yaml.safe_load(open(load_profile("bridge_orig").source, encoding="utf-8"))
    profile["prompt_template"] = "{instruction} {instruction:>2000000000}"
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(profile))
    result = decode("--robot", str(path), "--ids", IDS)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: prompt_template: only {{instruction}} may be substituted" in lines[0], lines
