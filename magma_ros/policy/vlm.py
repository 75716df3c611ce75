"""The shared vision-language model runtime behind one small thread-safe facade, ``VLMRunner``:
used by the ``magma`` backend and by ``magma-ros serve``. The work is done in
``vlm_loading`` (bringing a model up), ``vlm_checks`` (model and request checks),
``action_decoding`` (constrained 7-token decoding) and ``streaming`` (free-form text).

torch and transformers are imported lazily: importing this module imports neither.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..actions.tokenizer import DEFAULT_N_BINS
from .action_decoding import (
    ActionOnlyLogits,
    PreparedAction,
    check_action_ids,
    decode_direct,
    decode_generate,
    generation_failed,
)
from .base import PolicyConfigError, PolicyError, check_image
from .config import BackendConfig
from .hf_adapters import ModelAdapter
from .streaming import stream_text
from .vlm_checks import (
    check_layerscale,
    check_temperature,
    check_text_request,
    check_vocabulary,
    eos_ids,
    output_vocab_size,
)
from .vlm_loading import load_adapter, remote_code_failure

WARMUP_PROMPT = "What action should the robot take to warm up?"
WARMUP_IMAGE_SIZE = (256, 256)
PROMPT_CACHE_SIZE = 64  # rendered action prompts kept (robots repeat their instruction for every frame)


class VLMRunner:
    """One loaded vision-language model behind a small thread-safe API (one generation at a time).

    Action requests run in two parts: ``prepare_action`` (checks, prompt, tokens, image crops;
    any thread, concurrently) and ``decode_actions`` (the model, one batch at a time)."""

    def __init__(self, adapter: ModelAdapter, model_name: str, min_base_vocab: int = DEFAULT_N_BINS + 1) -> None:
        self.adapter = adapter
        self.model_name = model_name
        self.vocab_size = int(adapter.tokenizer.vocab_size)  # base vocabulary, without added tokens
        self.last_timings: dict[str, float] = {}
        self._lock = threading.Lock()
        check_vocabulary(self.vocab_size, output_vocab_size(adapter.model), min_base_vocab)
        self._eos_ids = eos_ids(adapter.model, adapter.tokenizer)
        lo, hi = self.vocab_size - DEFAULT_N_BINS, self.vocab_size
        clash = sorted(e for e in self._eos_ids if lo <= e < hi)
        if clash:
            raise PolicyConfigError(f"model {model_name}: end-of-sequence id(s) {clash} "
                                    f"fall inside the action ids {lo}..{hi - 1}")
        self._action_only = ActionOnlyLogits(lo, hi)
        # "direct" (KV-cached loop) where the adapter's forward convention is verified, else "generate"
        self.decoder = "direct" if adapter.direct_decode else "generate"
        self._max_context_tokens = int(adapter.max_context_tokens())
        self._action_prompt: Callable[[str], str] = functools.lru_cache(PROMPT_CACHE_SIZE)(self._render_action_prompt)

    @property
    def max_context_tokens(self) -> int:
        """The language model's maximum number of positions (prompt, image tokens and output)."""
        return self._max_context_tokens

    @classmethod
    def load(cls, config: BackendConfig) -> "VLMRunner":
        """Load ``config.model`` (see ``vlm_loading.load_adapter``), check it, warm it up.

        Raises ``PolicyConfigError`` for options or checkpoints that cannot work and ``PolicyError``
        when a valid configuration cannot be brought up here (no GPU, out of memory). With Magma's
        remote code, any check or warm-up failure is a ``PolicyConfigError`` naming its setup.
        """
        loaded = load_adapter(config)
        try:
            if loaded.remote_code:
                check_layerscale(loaded.adapter.model)
            runner = cls(loaded.adapter, config.model, loaded.min_base_vocab)
            runner.warm_up()
        except PolicyError as exc:  # unloaded LayerScale, vocabulary mismatch, generation failure
            if not loaded.remote_code:
                raise
            raise PolicyConfigError(remote_code_failure(config.model, str(exc))) from None
        return runner

    def warm_up(self) -> None:
        """One throw-away action so the first real call does not pay for lazy initialisation."""
        self.action_ids(np.zeros((WARMUP_IMAGE_SIZE[1], WARMUP_IMAGE_SIZE[0], 3), np.uint8), WARMUP_PROMPT)

    def action_ids(self, image: np.ndarray, prompt: str, temperature: float = 0.0) -> np.ndarray:
        """7 action token ids, constrained decoding (exactly 7 new tokens, each an action id)."""
        prepared = self.prepare_action(image, prompt, temperature)
        t0 = time.perf_counter()
        ids = self.decode_actions([prepared])[0]
        self.last_timings = {"preprocess": prepared.preprocess_s, "generate": time.perf_counter() - t0}
        return ids

    def action_ids_batch(self, requests: Sequence[tuple[np.ndarray, str, float]]) -> list[np.ndarray | Exception]:
        """7 action ids for each (image, prompt, temperature), decoded together: one left-padded
        prefill and 7 batched constrained steps (greedy rows give the ids ``action_ids`` gives).

        Per request, either its ids or the exception for it (a bad image or temperature fails
        only its own request). A model failure raises ``PolicyError`` for the whole batch.
        """
        results: list[np.ndarray | Exception | None] = [None] * len(requests)
        valid: list[int] = []
        prepared: list[PreparedAction] = []
        for i, request in enumerate(requests):
            try:
                prepared.append(self.prepare_action(*request))
                valid.append(i)
            except (PolicyError, ValueError) as exc:  # check_image: ValueError; temperature: PolicyConfigError
                results[i] = exc
        if prepared:
            for i, ids in zip(valid, self.decode_actions(prepared)):
                results[i] = ids
            self.last_timings["preprocess"] = sum(p.preprocess_s for p in prepared)
        return results  # type: ignore[return-value]

    def prepare_action(self, image: np.ndarray, prompt: str, temperature: float = 0.0) -> PreparedAction:
        """Check an action request and build its model inputs, without the model: callable from
        several threads at once (adapters only read their tokenizer here; those that pad batches
        with it do that in ``collate``, on the decoding thread). ``ValueError`` for a bad image,
        ``PolicyConfigError`` for a bad temperature."""
        check_image(image)
        check_temperature(temperature)
        t0 = time.perf_counter()
        inputs = self.adapter.prepare(image, self._action_prompt(prompt))
        return PreparedAction(inputs, temperature, time.perf_counter() - t0)

    def decode_actions(self, prepared: Sequence[PreparedAction]) -> list[np.ndarray]:
        """7 action ids per prepared request: one batched decode on the KV-cached loop, or one
        ``generate`` per request on runtimes without it (Magma's remote code). A model failure
        raises ``PolicyError`` for all of them."""
        t0 = time.perf_counter()
        if self.decoder == "direct":
            inputs = self.adapter.collate([p.inputs for p in prepared])
            temperatures = [p.temperature for p in prepared]
            ids = list(self._run_decode(lambda: decode_direct(self.adapter, inputs, temperatures, self._action_only)))
        else:
            ids = []
            for p in prepared:
                one = self.adapter.collate([p.inputs])
                ids.append(self._run_decode(lambda: decode_generate(self.adapter, one, p.temperature,
                                                                    self._action_only, self._pad_id())))
        for row in ids:
            check_action_ids(row, self._action_only, self.model_name)
        self.last_timings = {"generate": time.perf_counter() - t0}
        if len(prepared) > 1:
            self.last_timings["batch"] = len(prepared)
        return ids

    def generate_text(self, image: np.ndarray | None, messages: list[dict], max_new_tokens: int,
                      temperature: float, top_p: float) -> Iterator[str]:
        """Free-form generation, streamed as text pieces (messages: [{"role","content": str}]).

        Stops at the model's end-of-sequence token or after ``max_new_tokens``. Closing the
        iterator early stops the generation.
        """
        if image is not None:
            check_image(image)
        check_text_request(messages, max_new_tokens, temperature, top_p)

        def inputs() -> dict[str, Any]:
            text = self.adapter.prompt(messages, with_image=image is not None)
            return self.adapter.collate([self.adapter.prepare(image, text)])

        return stream_text(self.adapter, inputs, self._session, self.model_name, max_new_tokens, temperature,
                           top_p, self._pad_id())

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` (no special tokens added)."""
        return len(self.adapter.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Text of token ids (special tokens skipped)."""
        return self.adapter.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def close(self) -> None:
        """Drop the model and free accelerator memory."""
        with self._lock:
            model = getattr(self.adapter, "model", None)
            self.adapter.model = None
        if model is not None and str(self.adapter.device).startswith("cuda"):
            import torch

            del model
            torch.cuda.empty_cache()

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Holds the model (one generation at a time); ``PolicyError`` once the runner is closed."""
        with self._lock:
            if self.adapter.model is None:
                raise PolicyError(f"model {self.model_name}: the runner was closed")
            yield

    def _run_decode(self, decode: Callable[[], np.ndarray]) -> np.ndarray:
        import torch

        with self._session(), torch.inference_mode():
            try:
                return decode()
            except Exception as exc:  # any model failure is a backend error the caller acts on
                raise generation_failed(self.model_name, exc) from exc

    def _render_action_prompt(self, prompt: str) -> str:
        return self.adapter.prompt([{"role": "user", "content": prompt}], with_image=True)

    def _pad_id(self) -> int | None:
        pad = self.adapter.tokenizer.pad_token_id
        return pad if pad is not None else (min(self._eos_ids) if self._eos_ids else None)
