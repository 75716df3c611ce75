"""The action contract: exact published values, round trips, batches, and every error path."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from magma_ros.actions import (
    ActionDecoder,
    ActionTokenError,
    ActionTokenizer,
    TextTokenizer,
    TokenizerError,
    action_to_dict,
    extract_action_ids,
    load_profile,
    text_ids_to_action_ids,
)

EXAMPLE_TEXT = "立刻ẳn сирiв衝ційнаiв"
EXAMPLE_IDS = [127843, 127876, 127917, 127872, 127852, 127874, 127872]
PUBLISHED_BRIDGE = {
    "x": 0.006277765673749571, "y": -0.0017191617944661772, "z": -0.004658273500116439,
    "roll": 0.0004997134208677839, "pitch": 0.00591804922503579, "yaw": -0.004902105561658515,
    "gripper": 0.0,
}


@pytest.fixture(scope="module")
def bridge() -> ActionDecoder:
    return ActionDecoder(load_profile("bridge_orig").stats)


@pytest.fixture(scope="module")
def llama3(llama3_tokenizer_path) -> TextTokenizer:
    return TextTokenizer(llama3_tokenizer_path)


def test_published_example_from_text_to_the_last_digit(bridge, llama3):
    assert llama3.base_vocab_size == 128000
    assert llama3.encode(EXAMPLE_TEXT).tolist() == EXAMPLE_IDS
    assert action_to_dict(bridge.decode_text(EXAMPLE_TEXT, llama3)) == PUBLISHED_BRIDGE


def test_published_example_from_ids(bridge):
    assert action_to_dict(bridge.decode_ids(EXAMPLE_IDS)) == PUBLISHED_BRIDGE


def test_tokenizer_from_model_directory(tmp_path, llama3_tokenizer_path):
    (tmp_path / "tokenizer.json").write_bytes(llama3_tokenizer_path.read_bytes())
    assert TextTokenizer(tmp_path).encode(EXAMPLE_TEXT).tolist() == EXAMPLE_IDS


def test_google_robot_uses_its_own_statistics():
    stats = load_profile("google_robot").stats
    action = ActionDecoder(stats).decode_ids(EXAMPLE_IDS)
    normalized = ActionTokenizer().ids_to_normalized(EXAMPLE_IDS)
    expected_x = 0.5 * (normalized[0] + 1) * (stats.q99[0] - stats.q01[0]) + stats.q01[0]
    assert action[0] == expected_x
    assert action[6] == normalized[6]  # gripper is not unnormalized (mask false)


def test_bin_edges_and_id_range():
    tok = ActionTokenizer(vocab_size=128000)
    assert (tok.min_action_id, tok.max_action_id) == (127744, 127999)
    # id 127999 -> k = 0 -> lowest center; 127744 -> k = 255 clipped to 254 -> highest center
    assert tok.ids_to_normalized([127999, 127744, 127745]).tolist() == [
        tok.centers[0], tok.centers[254], tok.centers[254]]
    assert tok.normalized_to_ids([-1.0, 1.0, 5.0, -5.0]).tolist() == [127999, 127744, 127744, 127999]


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, 7, elements=st.floats(-3, 3, allow_nan=False)))
def test_normalized_round_trip_within_half_a_bin(values):
    tok = ActionTokenizer()
    decoded = tok.ids_to_normalized(tok.normalized_to_ids(values))
    half_bin = (tok.bins[1] - tok.bins[0]) / 2
    assert np.all(np.abs(decoded - np.clip(values, -1, 1)) <= half_bin + 1e-12)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, 7, elements=st.floats(-0.3, 0.3, allow_nan=False)))
def test_robot_unit_round_trip_within_half_a_bin(bridge, action):
    stats = bridge.stats
    decoded = bridge.decode_ids(bridge.encode(action))
    span = np.asarray(stats.q99) - np.asarray(stats.q01)
    half_bin = np.where(stats.mask, span / 510, 1 / 255)  # half of 2/255 in normalized units
    clipped = np.where(stats.mask, np.clip(action, stats.q01, stats.q99), np.clip(action, -1, 1))
    assert np.all(np.abs(decoded - clipped) <= half_bin + 1e-12)


def test_batch_decoding_matches_single_decoding(bridge):
    rng = np.random.default_rng(0)
    ids = rng.integers(127744, 128000, size=(4, 5, 7))
    batch = bridge.decode_ids(ids)
    assert batch.shape == (4, 5, 7)
    for i in range(4):
        for j in range(5):
            np.testing.assert_array_equal(batch[i, j], bridge.decode_ids(ids[i, j]))


def test_extract_reads_up_to_eos():
    tok = ActionTokenizer()
    assert extract_action_ids(EXAMPLE_IDS + [128009, 5, 6], tok, eos_ids=[128009]).tolist() == EXAMPLE_IDS


@pytest.mark.parametrize("sequence, message", [
    (EXAMPLE_IDS[:6] + [128009], "found 6 action token(s)"),
    (EXAMPLE_IDS + [127900, 128009], "found 8 action token(s)"),
    (EXAMPLE_IDS[:6] + [15339, 128009], "1 other token(s) (id 15339 at position 6)"),
    ([], "found 0 action token(s)"),
])
def test_extract_errors_say_what_was_found(sequence, message):
    with pytest.raises(ActionTokenError, match=r"expected exactly 7 action tokens") as err:
        extract_action_ids(sequence, ActionTokenizer(), eos_ids=[128009])
    assert message in str(err.value)


def test_non_action_ids_are_rejected_with_their_position(bridge):
    with pytest.raises(ActionTokenError, match=r"not action tokens .*15339 at index 2"):
        bridge.decode_ids([127843, 127876, 15339, 127872, 127852, 127874, 127872])


def test_wrong_count_and_dtype_are_rejected(bridge):
    with pytest.raises(ActionTokenError, match=r"expected 7 action ids per action, got shape \(6,\)"):
        bridge.decode_ids(EXAMPLE_IDS[:6])
    with pytest.raises(ActionTokenError, match="must be integers"):
        bridge.decode_ids(np.asarray(EXAMPLE_IDS, dtype=float))
    with pytest.raises(ActionTokenError, match="non-finite"):
        ActionTokenizer().normalized_to_ids([0, np.nan])


def test_text_that_is_not_action_tokens(bridge, llama3):
    with pytest.raises(ActionTokenError, match=r"text 'move left': expected exactly 7 action tokens"):
        bridge.decode_text("move left", llama3)


def test_unreadable_tokenizers(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer not found"):
        TextTokenizer(tmp_path / "missing.json")
    with pytest.raises(TokenizerError, match=r"no tokenizer.json in this directory"):
        TextTokenizer(tmp_path)
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(TokenizerError, match=r"tokenizer.json: not a readable tokenizer.json"):
        TextTokenizer(broken)


def test_text_of_generated_ids_decodes_to_the_same_ids(llama3):
    """Splitting the reply's bytes recovers what the model generated, also where re-tokenizing
    the text with BPE would give other tokens (about a quarter of random action sequences)."""
    tok = ActionTokenizer()
    partial_utf8 = {i for i in range(tok.min_action_id, tok.max_action_id + 1) if "\ufffd" in llama3.decode([i])}
    assert partial_utf8  # some action tokens are not valid UTF-8 on their own
    rng = np.random.default_rng(7)
    retokenized_differently = 0
    for _ in range(200):
        ids = rng.integers(tok.min_action_id, tok.max_action_id + 1, size=7)
        if partial_utf8 & set(ids.tolist()):
            continue
        text = llama3.decode(ids)
        retokenized_differently += llama3.encode(text).tolist() != ids.tolist()
        assert text_ids_to_action_ids(text, llama3, tok).tolist() == ids.tolist()
    assert retokenized_differently > 0


def test_text_with_a_lost_partial_utf8_token_is_rejected(llama3):
    tok = ActionTokenizer()
    lossy = next(i for i in range(tok.min_action_id, tok.max_action_id + 1) if llama3.decode([i]) == "\ufffd")
    text = llama3.decode(EXAMPLE_IDS[:3] + [lossy] + EXAMPLE_IDS[4:])
    with pytest.raises(ActionTokenError, match="U\\+FFFD"):
        text_ids_to_action_ids(text, llama3, tok)
