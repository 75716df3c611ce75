"""Action encoding is the inverse of decoding (OpenVLA's digitize convention, 256 bins, the same
vocabulary offset): every id round-trips, every action decodes to within half a bin of itself."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magma_ros.actions import ActionDecoder, ActionTokenizer, NormalizationStats, load_profile
from magma_ros.actions.tokenizer import ACTION_DIM

VOCABS = (128000, 32000, 256)
PROFILES = ("bridge_orig", "google_robot", "sim_panda")


def decoder_for(profile: str, vocab: int) -> ActionDecoder:
    return ActionDecoder(load_profile(profile).stats, ActionTokenizer(vocab_size=vocab))


def openvla_encode(normalized: np.ndarray, vocab: int) -> np.ndarray:
    """OpenVLA's ActionTokenizer.__call__, written out: clip, digitize on 256 bin edges, count down
    from the vocabulary's end."""
    bins = np.linspace(-1.0, 1.0, 256)
    return vocab - np.digitize(np.clip(normalized, -1.0, 1.0), bins)


def non_degenerate(stats: NormalizationStats) -> np.ndarray:
    """Axes whose ids decode to distinct values (an axis with q01 == q99 decodes every id alike)."""
    return ~np.asarray(stats.mask) | (np.asarray(stats.q99) > np.asarray(stats.q01))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("vocab", VOCABS)
def test_every_id_of_every_axis_round_trips(profile, vocab):
    """encode(decode(id)) == id for all 255 ids with their own bin; the edge id vocab - 256 (which
    decode clips into the last bin, as OpenVLA does) comes back as vocab - 255, the id of that bin,
    and decodes to the same action."""
    decoder = decoder_for(profile, vocab)
    ids = np.repeat(np.arange(vocab - 256, vocab)[:, None], ACTION_DIM, axis=1)  # (256, 7): every id on every axis
    decoded = decoder.decode_ids(ids)
    again = decoder.encode(decoded)
    keep = non_degenerate(decoder.stats)
    assert np.array_equal(again[1:, keep], ids[1:, keep])
    assert np.array_equal(again[0, keep], np.full(keep.sum(), vocab - 255))
    assert np.array_equal(decoder.decode_ids(again), decoded)


def test_a_degenerate_axis_encodes_to_its_middle_bin():
    """sim_panda's rotation axes never moved (q01 == q99 == 0): every id decodes to 0, which
    encodes to the bin holding normalized 0 and decodes to 0 again."""
    decoder = decoder_for("sim_panda", 128000)
    ids = np.repeat(np.arange(128000 - 256, 128000)[:, None], ACTION_DIM, axis=1)
    decoded = decoder.decode_ids(ids)
    assert np.all(decoded[:, 3:6] == 0.0)
    assert np.all(decoder.encode(decoded)[:, 3:6] == 128000 - int(np.digitize(0.0, np.linspace(-1, 1, 256))))
    assert np.all(decoder.decode_ids(decoder.encode(decoded))[:, 3:6] == 0.0)


@pytest.mark.parametrize("vocab", VOCABS)
def test_encoding_matches_openvla_digitize_convention(vocab):
    tokenizer = ActionTokenizer(vocab_size=vocab)
    values = np.concatenate([np.linspace(-1.2, 1.2, 4001), tokenizer.bins, [-1.0, 1.0, 0.0]])
    assert np.array_equal(tokenizer.normalized_to_ids(values), openvla_encode(values, vocab))
    assert tokenizer.normalized_to_ids(1.0) == vocab - 256  # the edge id is reachable, as in OpenVLA
    assert tokenizer.normalized_to_ids(-1.0) == vocab - 1


def test_an_action_at_or_beyond_q99_takes_the_edge_id_and_decodes_half_a_bin_below():
    decoder = decoder_for("bridge_orig", 128000)
    q01, q99 = np.asarray(decoder.stats.q01), np.asarray(decoder.stats.q99)
    for action in (q99, q99 + 1.0):
        ids = decoder.encode(action)
        assert np.all(ids[:6] == 128000 - 256)
        half_bin = (q99 - q01)[:6] / 255.0 / 2.0
        assert np.allclose(decoder.decode_ids(ids)[:6], q99[:6] - half_bin, rtol=0, atol=1e-15)
    assert np.all(decoder.encode(q01 - 1.0)[:6] == 128000 - 1)


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
quantiles = st.lists(st.tuples(finite, finite).map(sorted), min_size=ACTION_DIM, max_size=ACTION_DIM)


@st.composite
def stats_and_action(draw):
    pairs = draw(quantiles)
    mask = draw(st.lists(st.booleans(), min_size=ACTION_DIM, max_size=ACTION_DIM))
    stats = NormalizationStats(mask=tuple(mask), q01=tuple(p[0] for p in pairs), q99=tuple(p[1] for p in pairs))
    action = np.array(draw(st.lists(finite, min_size=ACTION_DIM, max_size=ACTION_DIM)))
    return stats, action


@settings(max_examples=500, deadline=None)
@given(stats_and_action(), st.sampled_from(VOCABS))
def test_decode_of_encode_is_within_half_a_bin_of_the_clipped_action(case, vocab):
    stats, action = case
    decoder = ActionDecoder(stats, ActionTokenizer(vocab_size=vocab))
    ids = decoder.encode(action)
    assert np.all((ids >= vocab - 256) & (ids <= vocab - 1))
    decoded = decoder.decode_ids(ids)
    mask = np.asarray(stats.mask)
    q01, q99 = np.asarray(stats.q01), np.asarray(stats.q99)
    half_bin = 1.0 / 255.0  # bin width 2/255 in normalized units
    # masked axes: robot units, half a bin is half_bin * (q99 - q01) / 2 (tolerance for float rounding)
    clipped = np.clip(action, q01, q99)
    bound = half_bin * (q99 - q01) / 2.0 + 1e-9 * np.maximum(1.0, np.abs(clipped))
    assert np.all(np.abs(decoded - clipped)[mask] <= bound[mask])
    # unmasked axes carry normalized values: the decoded value is exactly the center of the bin
    # the clipped value falls in, within half a bin of it
    tokenizer = decoder.tokenizer
    n = np.clip(action, -1.0, 1.0)
    centers = tokenizer.centers[np.clip(np.digitize(n, tokenizer.bins) - 1, 0, 254)]
    assert np.array_equal(decoded[~mask], centers[~mask])
    assert np.all(np.abs(decoded - n)[~mask] <= half_bin + 1e-12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=255), min_size=ACTION_DIM, max_size=ACTION_DIM),
       st.sampled_from(PROFILES))
def test_encode_decode_is_idempotent_on_decoded_actions(offsets, profile):
    """decode(encode(decode(ids))) == decode(ids) for any seven ids (edge ids included)."""
    decoder = decoder_for(profile, 128000)
    ids = 128000 - 256 + np.asarray(offsets)
    decoded = decoder.decode_ids(ids)
    assert np.array_equal(decoder.decode_ids(decoder.encode(decoded)), decoded)
