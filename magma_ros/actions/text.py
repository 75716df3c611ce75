"""Action token text <-> token ids through a Hugging Face ``tokenizers`` tokenizer.json."""
from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import one_line
from .errors import ActionTokenError, TokenizerError

REPLACEMENT_CHAR = "\ufffd"
PREVIEW_CHARS = 80


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``repr(text)`` cut to about ``limit`` characters, for error messages about client input."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class TextTokenizer:
    """A tokenizer loaded from a ``tokenizer.json`` file or a model directory holding one."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        path = Path(path).expanduser()
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            where = f"{path} (no tokenizer.json in this directory)" if path.is_dir() else str(path)
            raise TokenizerError(f"tokenizer not found: {where}")
        try:
            self._tok = Tokenizer.from_file(str(file))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception on malformed files
            raise TokenizerError(f"{file}: not a readable tokenizer.json: {one_line(exc)}") from None
        self.path = file
        self._piece_tables: dict[tuple[int, int], dict[int, list[tuple[int, bytes]]]] = {}
        self._table_lock = threading.Lock()

    @property
    def base_vocab_size(self) -> int:
        """Vocabulary size without added special tokens (128000 for Llama-3)."""
        return int(self._tok.get_vocab_size(with_added_tokens=False))

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` without special tokens added."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids: list[int] | np.ndarray) -> str:
        """Text of ``ids`` (special tokens skipped)."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        """Id of a literal token such as ``<|eot_id|>``, or None."""
        return self._tok.token_to_id(token)

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes a token stands for (byte-level tokens may be partial UTF-8)."""
        from tokenizers import decoders

        added = self._tok.get_added_tokens_decoder()
        if token_id in added:
            return added[token_id].content.encode("utf-8")
        piece = self._tok.id_to_token(token_id)
        if piece is None:
            raise TokenizerError(f"{self.path}: no token with id {token_id}")
        if isinstance(self._tok.decoder, decoders.ByteLevel):
            table = _unicode_to_byte()
            return bytes(table[ch] for ch in piece)
        return self._tok.decode([token_id]).encode("utf-8")

    def split_action_text(self, text: str, first_id: int, last_id: int, count: int) -> np.ndarray:
        """The ``count`` token ids in ``first_id..last_id`` whose bytes concatenate to ``text``.

        Unlike re-tokenizing, this recovers exactly what a model generated whenever the text is
        lossless. Raises ``ActionTokenError`` when no split or more than one split exists.
        """
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ActionTokenError(f"text is not valid Unicode: {exc.reason} at character {exc.start}") from None
        found = _splits(data, self._pieces_by_first_byte(first_id, last_id), count, limit=2)
        if len(found) == 1:
            return np.asarray(found[0], dtype=np.int64)
        if not found:
            hint = (" (it holds U+FFFD: a token that is not valid UTF-8 on its own was lost when the reply was "
                    "decoded to text; ask the endpoint for token ids)") if REPLACEMENT_CHAR in text else ""
            raise ActionTokenError(f"text {preview(text)} is not exactly {count} action tokens{hint}")
        raise ActionTokenError(f"text {preview(text)} splits into {count} action tokens in more than one way")

    def prepare_action_range(self, first_id: int, last_id: int) -> None:
        """Build the byte table ``split_action_text`` uses for tokens ``first_id..last_id`` now (at
        start-up, not on the first action); ``TokenizerError`` when a token of the range is missing."""
        self._pieces_by_first_byte(first_id, last_id)

    def _pieces_by_first_byte(self, first_id: int, last_id: int) -> dict[int, list[tuple[int, bytes]]]:
        """The bytes of tokens ``first_id..last_id`` grouped by their first byte, built once per range."""
        key = (first_id, last_id)
        table = self._piece_tables.get(key)
        if table is None:
            with self._table_lock:
                table = self._piece_tables.get(key)
                if table is None:
                    table = {}
                    for tid in range(first_id, last_id + 1):
                        piece = self.token_bytes(tid)
                        if piece:
                            table.setdefault(piece[0], []).append((tid, piece))
                    self._piece_tables[key] = table
        return table


def _splits(data: bytes, by_first: dict[int, list[tuple[int, bytes]]], count: int,
            limit: int) -> list[tuple[int, ...]]:
    """Up to ``limit`` ways to write ``data`` as exactly ``count`` pieces from ``by_first`` (token id and
    bytes grouped by first byte; depth-first, memoized dead ends)."""
    dead: set[tuple[int, int]] = set()
    found: list[tuple[int, ...]] = []

    def walk(pos: int, left: int, prefix: tuple[int, ...]) -> None:
        if len(found) >= limit or (pos, left) in dead:
            return
        if pos == len(data) or left == 0:
            if pos == len(data) and left == 0:
                found.append(prefix)
            return
        before = len(found)
        for tid, piece in by_first.get(data[pos], ()):
            if data.startswith(piece, pos):
                walk(pos + len(piece), left - 1, prefix + (tid,))
        if len(found) == before:
            dead.add((pos, left))

    walk(0, count, ())
    return found


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet: printable bytes map to themselves, the rest to 256+."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table
