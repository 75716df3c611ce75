"""Action token text -> token ids through a Hugging Face ``tokenizers`` tokenizer.json."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import TokenizerError


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
        except Exception as exc:  # tokenizers raises a bare Exception on malformed files
            raise TokenizerError(f"{file}: not a readable tokenizer.json: {' '.join(str(exc).split())}") from None
        self.path = file

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
