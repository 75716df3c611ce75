"""Decode Magma action tokens into a 7-DoF end-effector delta, as the hosted endpoint's
/v1/action-tokens does. Prints one JSON object {"x","y","z","roll","pitch","yaw","gripper"}.

examples:
  magma-ros decode --robot bridge_orig --tokenizer /models/Magma-8B "立刻ẳn сирiв衝ційнаiв"
  magma-ros decode --robot google_robot --ids 127843,127876,127917,127872,127852,127874,127872
  magma-ros decode --stats my_stats.yaml --ids ...
"""
from __future__ import annotations

import argparse
import json
import re

import numpy as np

from ..actions.profiles import builtin_profile_names
from ..options import Option
from ..options import add_arguments as add_options

HELP = "decode action token text or ids into robot units"
IDS = Option("ids", None, "seven comma-separated action token ids instead of TEXT", type=str)
STATS_SOURCES: tuple[Option, ...] = (  # one or the other
    Option("robot", None, f"built-in robot profile ({', '.join(builtin_profile_names())}) or a profile YAML path",
           type=str),
    Option("stats", None, "YAML or JSON file with mask, q01, q99 (instead of --robot)", type=str),
)
VOCABULARY_OPTIONS: tuple[Option, ...] = (
    Option("tokenizer", None, "tokenizer.json or model directory (needed for TEXT)", type=str),
    Option("vocab_size", None, "base vocabulary size (default: the tokenizer's, or 128000 for Llama-3)", type=int),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``magma-ros decode``."""
    parser.add_argument("text", nargs="?", help="action token text as the model generated it")
    add_options(parser, (IDS,))
    add_options(parser.add_mutually_exclusive_group(), STATS_SOURCES)
    add_options(parser, VOCABULARY_OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Decode and print the JSON object."""
    from ..actions import (
        ActionDecoder,
        ActionTokenizer,
        NormalizationStats,
        TextTokenizer,
        action_to_dict,
        load_profile,
    )
    from ..actions.tokenizer import LLAMA3_BASE_VOCAB
    from ..errors import UserError

    if (args.text is None) == (args.ids is None):
        raise UserError("give exactly one of TEXT and --ids")
    if args.robot is None and args.stats is None:
        raise UserError("give --robot NAME|PATH or --stats FILE")
    if args.text is not None and not _is_unicode(args.text):
        raise UserError("TEXT: not valid UTF-8 (pass the action text exactly as the model generated it)")
    if args.vocab_size is not None and not 256 <= args.vocab_size < 2**31:
        raise UserError(f"--vocab-size: must be in 256..2**31-1 (the 256 action ids lie below it), "
                        f"got {str(args.vocab_size)[:40]}")
    stats = NormalizationStats.from_file(args.stats) if args.stats else load_profile(args.robot).stats
    text_tokenizer = None
    if args.text is not None:
        if not args.tokenizer:
            raise UserError("decoding TEXT needs --tokenizer (a tokenizer.json or model directory)")
        text_tokenizer = TextTokenizer(args.tokenizer)
    vocab = args.vocab_size or (text_tokenizer.base_vocab_size if text_tokenizer else LLAMA3_BASE_VOCAB)
    decoder = ActionDecoder(stats, ActionTokenizer(vocab_size=vocab))
    if text_tokenizer is not None:
        action = decoder.decode_text(args.text, text_tokenizer)
    else:
        action = decoder.decode_ids(_parse_ids(args.ids))
    print(json.dumps(action_to_dict(action)))
    return 0


def _parse_ids(text: str) -> np.ndarray:
    from ..errors import UserError

    items = re.split(r"\s*,\s*|\s+", text.strip())
    if "" in items:
        raise UserError(f"--ids: empty item {items.index('') + 1} in {text[:200]!r} (expected seven "
                        f"comma-separated integers)")
    try:
        ids = [int(v) for v in items]
    except ValueError:
        raise UserError(f"--ids: expected comma-separated integers, got {text[:200]!r}") from None
    for value in ids:
        if not 0 <= value < 2**31:
            raise UserError(f"--ids: {str(value)[:40]} is not a token id (0 <= id < 2**31)")
    return np.asarray(ids, dtype=np.int64)


def _is_unicode(text: str) -> bool:
    """False for text holding lone surrogates (command-line bytes that were not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
