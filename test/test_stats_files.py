"""Stats mappings: the published keys (mean, std, min, max, num_transitions, num_trajectories) are
validated, kept and written back; any other key is rejected by the one validation function that
`magma-ros decode --stats`, robot profiles and the server's per-request statistics share."""
from __future__ import annotations

import json

import httpx
import pytest
import yaml
from serve_support import ServerThread

from magma_ros.actions import NormalizationStats, TextTokenizer, load_profile
from magma_ros.actions.errors import ProfileError, StatsError
from magma_ros.actions.profiles import profile_from_mapping
from magma_ros.actions.stats import STATS_KEYS
from magma_ros.server.app import create_app
from magma_ros.server.decoding import ActionTokenService
from magma_ros.server.settings import ServerSettings

IDS = "127843,127876,127917,127872,127852,127874,127872"
EXAMPLE_TEXT = "立刻ẳn сирiв衝ційнаiв"
BRIDGE = load_profile("bridge_orig").stats.as_dict()
PUBLISHED = {**BRIDGE, "mean": [0.1] * 7, "std": [0.2] * 7, "min": [-1.0] * 7, "max": [1.0] * 7,
             "num_transitions": 2135463, "num_trajectories": 60064}


def test_published_keys_are_kept_and_written_back(tmp_path):
    stats = NormalizationStats.from_mapping(PUBLISHED)
    assert stats.as_dict() == PUBLISHED
    assert (stats.mean, stats.num_trajectories) == ((0.1,) * 7, 60064)
    for suffix, dump in ((".json", json.dumps), (".yaml", yaml.safe_dump)):
        path = tmp_path / f"stats{suffix}"
        path.write_text(dump(PUBLISHED))
        assert NormalizationStats.from_file(path) == stats
    assert NormalizationStats.from_mapping(BRIDGE).as_dict() == BRIDGE  # optional keys stay optional


@pytest.mark.parametrize("change,message", [
    ({"std": [0.1] * 6 + [-0.1]}, "stats.std[6]: must be >= 0"),
    ({"min": [2.0] * 7}, "stats.min[0]: 2.0 is greater than max[0] = 1.0"),
    ({"mean": [0.0] * 6}, "stats.mean: expected exactly 7 values, got 6"),
    ({"max": ["a"] * 7}, "stats.max[0]"),
    ({"mean": [float("nan")] * 7}, "stats.mean[0]"),
    ({"num_transitions": -1}, "stats.num_transitions: expected a whole number >= 0, got -1"),
    ({"num_trajectories": 2.5}, "stats.num_trajectories: expected a whole number >= 0, got 2.5"),
    ({"num_trajectories": True}, "stats.num_trajectories: expected a whole number >= 0, got True"),
    ({"p50": [0.0] * 7}, "stats: unknown key 'p50' (known: " + ", ".join(STATS_KEYS) + ")"),
])
def test_bad_published_keys_name_the_key(change, message):
    with pytest.raises(StatsError) as info:
        NormalizationStats.from_mapping({**PUBLISHED, **change})
    assert message in str(info.value)


def test_a_profile_normalization_section_follows_the_same_rule():
    data = yaml.safe_load(open(load_profile("bridge_orig").source).read())
    data["normalization"]["p50"] = [0.0] * 7
    with pytest.raises(ProfileError, match=r"my.yaml: normalization: unknown key 'p50'"):
        profile_from_mapping(data, "my.yaml")
    data["normalization"] = PUBLISHED
    assert profile_from_mapping(data, "my.yaml").stats.num_transitions == 2135463


@pytest.fixture(scope="module")
def server(llama3_tokenizer_path):
    service = ActionTokenService(TextTokenizer(llama3_tokenizer_path), vocab_size=128000)
    with ServerThread(create_app(ServerSettings(), service, None)) as srv:
        yield srv


def action_tokens(server, stats) -> httpx.Response:
    return httpx.post(server.url + "/v1/action-tokens", json={"text": EXAMPLE_TEXT, "normalization_stats": stats},
                      timeout=30)


@pytest.mark.parametrize("extra", [{"p50": [0.0] * 7}, {"Q01": [0.0] * 7}, {"normalization": {}}],
                         ids=["p50", "wrong case", "nested section"])
def test_unknown_key_decode_exits_2_and_server_answers_422_with_the_same_words(decode, server, tmp_path, extra):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({**BRIDGE, **extra}))
    result = decode("--stats", str(path), "--ids", IDS)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    prefix = f"magma-ros decode: error: {path}: "
    assert lines[0].startswith(prefix), lines
    response = action_tokens(server, {**BRIDGE, **extra})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "normalization_stats"
    assert error["message"] == "normalization_stats: " + lines[0].removeprefix(prefix)
    assert f"unknown key {next(iter(extra))!r}" in error["message"]


def test_published_keys_are_accepted_by_decode_and_server_alike(decode, server, tmp_path):
    path = tmp_path / "stats.yaml"
    path.write_text(yaml.safe_dump(PUBLISHED))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(BRIDGE))
    with_keys, without = decode("--stats", str(path), "--ids", IDS), decode("--stats", str(plain), "--ids", IDS)
    assert with_keys.returncode == 0, with_keys.stderr
    assert json.loads(with_keys.stdout) == json.loads(without.stdout)
    response = action_tokens(server, PUBLISHED)
    assert response.status_code == 200, response.text
    assert response.json() == action_tokens(server, BRIDGE).json()
    bad = action_tokens(server, {**PUBLISHED, "std": [-1.0] * 7})
    assert bad.status_code == 422 and "normalization_stats.std[0]: must be >= 0" in bad.json()["error"]["message"]
