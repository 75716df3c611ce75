"""The shared vision-language model runtime: load checks, constrained 7-token action decoding,
streamed free-form generation. Used by the ``magma`` backend and by ``magma-ros serve``.

torch and transformers are imported lazily: importing this module imports neither.
"""
from __future__ import annotations

import math
import re
import threading
import time
from typing import Any, Iterator, Sequence

import numpy as np

from ..actions.tokenizer import ACTION_DIM, DEFAULT_N_BINS, LLAMA3_BASE_VOCAB
from ..errors import one_line as _one_line
from .base import PolicyConfigError, PolicyError, check_image
from .config import BackendConfig
from .hf_adapters import ADAPTERS, ModelAdapter

MAGMA_TRANSFORMERS_RANGE = ("4.49", "4.56")  # >= first, < second: the only range Magma's remote code may run on
REMOTE_CODE_SETUP = ("Magma's remote code needs transformers>=4.49,<4.56, open_clip_torch, torchvision, wandb and "
                     "deepspeed, attn_implementation: eager, and still fails in generate() on some versions; "
                     "the default native implementation (trust_remote_code: false) needs none of that")
WARMUP_PROMPT = "What action should the robot take to warm up?"
WARMUP_IMAGE_SIZE = (256, 256)
_DTYPES = ("bfloat16", "float16", "float32")
_LAYERSCALE_NAME = re.compile(r"gamma(_\d+)?")


class VLMRunner:
    """One loaded vision-language model behind a small thread-safe API (one generation at a time)."""

    def __init__(self, adapter: ModelAdapter, model_name: str, min_base_vocab: int = DEFAULT_N_BINS + 1) -> None:
        self.adapter = adapter
        self.model_name = model_name
        self.vocab_size = int(adapter.tokenizer.vocab_size)  # base vocabulary, without added tokens
        self.last_timings: dict[str, float] = {}
        self._lock = threading.Lock()
        model_vocab = _output_vocab_size(adapter.model)
        check_vocabulary(self.vocab_size, model_vocab, min_base_vocab)
        self._eos_ids = _eos_ids(adapter)
        lo, hi = self.vocab_size - DEFAULT_N_BINS, self.vocab_size
        clash = sorted(e for e in self._eos_ids if lo <= e < hi)
        if clash:
            raise PolicyConfigError(f"model {model_name}: end-of-sequence id(s) {clash} fall inside the action ids {lo}..{hi - 1}")
        self._action_only = ActionOnlyLogits(lo, hi)
        # "direct" (KV-cached loop) where the adapter's forward convention is verified, else "generate"
        self.decoder = "direct" if adapter.direct_decode else "generate"
        self._max_context_tokens = int(adapter.max_context_tokens())

    @property
    def max_context_tokens(self) -> int:
        """The language model's maximum number of positions (prompt, image tokens and output)."""
        return self._max_context_tokens

    @classmethod
    def load(cls, config: BackendConfig) -> "VLMRunner":
        """Load ``config.model`` (local directory, or hub id in the local cache) on ``config.device``,
        check it, warm it up. Magma checkpoints load into the native implementation unless
        ``config.trust_remote_code`` asks for Magma's own (downloaded) model code.

        Raises ``PolicyConfigError`` for options or checkpoints that cannot work and ``PolicyError``
        when a valid configuration cannot be brought up here (no GPU, out of memory).
        """
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            raise PolicyConfigError(f"backend magma needs torch and transformers ({exc.name} is missing): "
                                    "pip install 'magma_ros[magma]'") from None
        device = resolve_device(config.device, torch)
        dtype = resolve_dtype(config.dtype, torch)
        revision = config.revision or None
        model_type = _model_type(config.model, revision)
        if model_type not in ADAPTERS:
            raise PolicyConfigError(f"model {config.model}: model_type {model_type!r} is not supported "
                                    f"(supported: {', '.join(ADAPTERS)})")
        if model_type == "magma" and config.trust_remote_code:
            return _load_remote_magma(cls, config, device, dtype, revision)
        if model_type == "magma":
            adapter = _load_native_magma(config, device, dtype, revision)
        else:
            adapter = _load_llava(config, device, dtype, revision)
        runner = cls(adapter, config.model)
        runner.warm_up()
        return runner

    def warm_up(self) -> None:
        """One throw-away action so the first real call does not pay for lazy initialisation."""
        self.action_ids(np.zeros((WARMUP_IMAGE_SIZE[1], WARMUP_IMAGE_SIZE[0], 3), np.uint8), WARMUP_PROMPT)

    def action_ids(self, image: np.ndarray, prompt: str, temperature: float = 0.0) -> np.ndarray:
        """7 action token ids, constrained decoding (exactly 7 new tokens, each an action id)."""
        check_image(image)
        _check_temperature(temperature)
        t0 = time.perf_counter()
        inputs = self.adapter.inputs(_to_pil(image), self._action_prompt(prompt))
        t1 = time.perf_counter()
        if self.decoder == "direct":
            new = self._run_decode(self._decode_direct, inputs, [temperature])[0]
        else:
            new = self._run_decode(self._decode_generate, inputs, temperature)
        self._check_action_ids(new)
        self.last_timings = {"preprocess": t1 - t0, "generate": time.perf_counter() - t1}
        return new

    def action_ids_batch(self, requests: Sequence[tuple[np.ndarray, str, float]]) -> list[np.ndarray | Exception]:
        """7 action ids for each (image, prompt, temperature), decoded together: one left-padded
        prefill and 7 batched constrained steps (greedy rows give the ids ``action_ids`` gives).

        Per request, either its ids or the exception for it (a bad image or temperature fails
        only its own request). A model failure raises ``PolicyError`` for the whole batch.
        Runtimes without the KV-cached loop (Magma's remote code) decode the requests in turn.
        """
        results: list[np.ndarray | Exception | None] = [None] * len(requests)
        valid: list[int] = []
        for i, (image, _, temperature) in enumerate(requests):
            try:
                check_image(image)
                _check_temperature(temperature)
                valid.append(i)
            except (PolicyError, ValueError) as exc:  # check_image: ValueError; temperature: PolicyConfigError
                results[i] = exc
        if self.decoder != "direct" or len(valid) == 1:
            for i in valid:
                results[i] = self.action_ids(*requests[i])
            return results  # type: ignore[return-value]
        if valid:
            t0 = time.perf_counter()
            inputs = self.adapter.batch_inputs([(_to_pil(requests[i][0]), self._action_prompt(requests[i][1]))
                                                for i in valid])
            t1 = time.perf_counter()
            ids = self._run_decode(self._decode_direct, inputs, [requests[i][2] for i in valid])
            for row, i in enumerate(valid):
                self._check_action_ids(ids[row])
                results[i] = ids[row]
            self.last_timings = {"preprocess": t1 - t0, "generate": time.perf_counter() - t1, "batch": len(valid)}
        return results  # type: ignore[return-value]

    def _action_prompt(self, prompt: str) -> str:
        return self.adapter.prompt([{"role": "user", "content": prompt}], with_image=True)

    def _run_decode(self, decode: Any, inputs: dict[str, Any], temperature: Any) -> np.ndarray:
        import torch

        with self._lock, torch.inference_mode():
            self._check_open()
            try:
                return decode(inputs, temperature)
            except Exception as exc:  # any model failure is a backend error the caller acts on
                raise PolicyError(f"model {self.model_name}: generation failed: "
                                  f"{type(exc).__name__}: {_one_line(exc)}") from exc

    def _check_action_ids(self, new: np.ndarray) -> None:
        lo, hi = self._action_only.lo, self._action_only.hi
        if new.shape != (ACTION_DIM,) or not np.all((new >= lo) & (new < hi)):
            raise PolicyError(f"model {self.model_name}: constrained decoding returned {new.tolist()}, "
                              f"expected {ACTION_DIM} ids in {lo}..{hi - 1}")

    def _decode_generate(self, inputs: dict[str, Any], temperature: float) -> np.ndarray:
        """``generate`` for exactly 7 tokens with the action-only logits processor."""
        from transformers import LogitsProcessorList

        target, kwargs, skip = self.adapter.generate_call(inputs)
        out = target.generate(**kwargs, max_new_tokens=ACTION_DIM, num_beams=1, use_cache=True,
                              logits_processor=LogitsProcessorList([self._action_only]),
                              pad_token_id=self._pad_id(), **_sampling(temperature, 1.0))
        return out[0, skip:].detach().cpu().numpy().astype(np.int64)

    def _decode_direct(self, inputs: dict[str, Any], temperatures: Sequence[float]) -> np.ndarray:
        """The same 7 constrained steps as a plain KV-cached loop: one prefill (last position's
        logits only), then one step per token, picking within the action ids' logits slice.
        Works per row (one temperature per row; 0 = greedy), so a left-padded batch decodes each
        row as it would alone. Returns (rows, 7) ids."""
        import torch

        lo, hi = self._action_only.lo, self._action_only.hi
        logits, state = self.adapter.prefill(inputs)
        temps = torch.tensor(temperatures, dtype=torch.float32, device=logits.device).unsqueeze(1)
        sampled = temps[:, 0] > 0
        ids = []
        for step in range(ACTION_DIM):
            scores = logits[:, lo:hi].float()
            pick = scores.argmax(dim=-1, keepdim=True)
            if bool(sampled.any()):
                probs = torch.softmax(scores[sampled] / temps[sampled], dim=-1)
                pick[sampled] = torch.multinomial(probs, 1)
            token = pick + lo
            ids.append(token)
            if step + 1 < ACTION_DIM:
                logits = self.adapter.step(token, state)
        return torch.cat(ids, dim=1).cpu().numpy().astype(np.int64)

    def generate_text(self, image: np.ndarray | None, messages: list[dict], max_new_tokens: int,
                      temperature: float, top_p: float) -> Iterator[str]:
        """Free-form generation, streamed as text pieces (messages: [{"role","content": str}]).

        Stops at the model's end-of-sequence token or after ``max_new_tokens``. Closing the
        iterator early stops the generation.
        """
        if image is not None:
            check_image(image)
        _check_messages(messages)
        _check_temperature(temperature)
        if not (0.0 < top_p <= 1.0):
            raise PolicyConfigError(f"top_p: must be in (0, 1], got {top_p!r}")
        if max_new_tokens < 1:
            raise PolicyConfigError(f"max_new_tokens: must be >= 1, got {max_new_tokens!r}")
        return self._stream(image, messages, max_new_tokens, temperature, top_p)

    def _stream(self, image: np.ndarray | None, messages: list[dict], max_new_tokens: int,
                temperature: float, top_p: float) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        text = self.adapter.prompt(messages, with_image=image is not None)
        inputs = self.adapter.inputs(None if image is None else _to_pil(image), text)
        streamer = TextIteratorStreamer(self.adapter.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = threading.Event()
        failure: list[BaseException] = []
        kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_beams=1, use_cache=True, streamer=streamer,
                                      stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                                      pad_token_id=self._pad_id())
        kwargs.update(_sampling(temperature, top_p))

        def run() -> None:
            try:
                with torch.inference_mode():
                    target, model_inputs, _ = self.adapter.generate_call(inputs)
                    target.generate(**model_inputs, **kwargs)
            except Exception as exc:  # reported to the consumer below, never swallowed
                failure.append(exc)
                streamer.end()

        with self._lock:
            self._check_open()
            worker = threading.Thread(target=run, name="vlm-generate", daemon=True)
            worker.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                cancel.set()
                worker.join()
        if failure:
            raise PolicyError(f"model {self.model_name}: generation failed: "
                              f"{type(failure[0]).__name__}: {_one_line(failure[0])}") from failure[0]

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

    def _check_open(self) -> None:
        if self.adapter.model is None:
            raise PolicyError(f"model {self.model_name}: the runner was closed")

    def _pad_id(self) -> int | None:
        pad = self.adapter.tokenizer.pad_token_id
        return pad if pad is not None else (min(self._eos_ids) if self._eos_ids else None)


class ActionOnlyLogits:
    """Logits processor: every id outside ``[lo, hi)`` (the 256 action ids) gets -inf."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores[:, : self.lo] = -math.inf
        scores[:, self.hi:] = -math.inf
        return scores


class _Cancelled:
    """Stopping criterion that ends generation once ``event`` is set (consumer went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _load_native_magma(config: BackendConfig, device: str, dtype: Any, revision: str | None) -> ModelAdapter:
    """The native implementation on a Magma checkpoint (no downloaded code)."""
    from .magma_native.loading import load_native, resolve_directory

    directory = resolve_directory(config.model, revision)
    try:
        return load_native(directory, device, dtype, config.attn_implementation)
    except (ImportError, ValueError) as exc:  # e.g. flash_attention_2 requested but not installed
        if isinstance(exc, PolicyConfigError):
            raise
        raise PolicyConfigError(f"model {config.model}: cannot load: {_one_line(exc)}") from None
    except RuntimeError as exc:  # e.g. CUDA out of memory while placing the weights
        raise PolicyError(f"model {config.model}: cannot load onto {device}: {_one_line(exc)}") from None


def _load_llava(config: BackendConfig, device: str, dtype: Any, revision: str | None) -> ModelAdapter:
    """A transformers-native LLaVA model."""
    import transformers

    try:
        model = transformers.LlavaForConditionalGeneration.from_pretrained(
            config.model, revision=revision, torch_dtype=dtype, attn_implementation=config.attn_implementation)
        processor = transformers.AutoProcessor.from_pretrained(config.model, revision=revision, use_fast=False)
    except (ImportError, ValueError) as exc:  # e.g. flash_attention_2 requested but not installed
        raise PolicyConfigError(f"model {config.model}: cannot load: {_one_line(exc)}") from None
    except OSError as exc:
        raise PolicyError(f"model {config.model}: cannot load: {_one_line(exc)}") from None
    _move(model, config.model, device)
    return ADAPTERS["llava"](model, processor, device, dtype)


def _load_remote_magma(cls: type[VLMRunner], config: BackendConfig, device: str, dtype: Any,
                       revision: str | None) -> VLMRunner:
    """Magma's own model code from the checkpoint (``trust_remote_code: true``). Any failure of
    that code or its checkpoint, including in the warm-up generation, is a PolicyConfigError
    naming the cause and the setup it needs; only moving to the device stays a PolicyError."""
    import transformers

    check_transformers_version(transformers.__version__)
    failed = f"model {config.model}: Magma's remote code (trust_remote_code: true) failed"
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            config.model, trust_remote_code=True, revision=revision, torch_dtype=dtype,
            attn_implementation=config.attn_implementation)
        processor = transformers.AutoProcessor.from_pretrained(config.model, trust_remote_code=True, revision=revision)
    except Exception as exc:  # the remote code fails in many ways (AttributeError, ImportError, ...)
        raise PolicyConfigError(f"{failed}: {type(exc).__name__}: {_one_line(exc)} ({REMOTE_CODE_SETUP})") from None
    _move(model, config.model, device)
    try:
        check_layerscale(model)
        runner = cls(ADAPTERS["magma"](model, processor, device, dtype), config.model, LLAMA3_BASE_VOCAB)
        runner.warm_up()
    except PolicyError as exc:  # unloaded LayerScale, vocabulary mismatch, generation failure
        raise PolicyConfigError(f"{failed}: {exc} ({REMOTE_CODE_SETUP})") from None
    return runner


def _move(model: Any, name: str, device: str) -> None:
    try:
        model.to(device).eval()
    except RuntimeError as exc:  # e.g. CUDA out of memory
        raise PolicyError(f"model {name}: cannot move to {device}: {_one_line(exc)}") from None


def resolve_device(device: str, torch: Any) -> str:
    """Check ``device`` (cpu, cuda, cuda:N) against this machine."""
    if device == "cpu":
        return device
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not match:
        raise PolicyConfigError(f"device: expected cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise PolicyError(f"device: {device} requested but CUDA is not available "
                          "(no GPU, no driver, or a CPU-only torch build); set device: cpu to run on the CPU")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise PolicyError(f"device: {device} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def resolve_dtype(name: str, torch: Any) -> Any:
    """The torch dtype named ``name``."""
    if name not in _DTYPES:
        raise PolicyConfigError(f"dtype: must be one of {', '.join(_DTYPES)}, got {name!r}")
    return getattr(torch, name)


def check_transformers_version(version: str) -> None:
    """Raise ``PolicyConfigError`` unless ``version`` is in the range Magma's remote code supports."""
    from packaging.version import Version

    low, high = MAGMA_TRANSFORMERS_RANGE
    if not (Version(low) <= Version(version) < Version(high)):
        raise PolicyConfigError(f"transformers {version} cannot run Magma's remote code (trust_remote_code: true): "
                                f"need >={low},<{high}; or leave trust_remote_code false to use the native implementation")


def check_vocabulary(base_vocab: int, model_vocab: int, min_base_vocab: int) -> None:
    """The tokenizer must have room for the 256 action ids and the model must score them all."""
    if base_vocab < min_base_vocab:
        raise PolicyError(f"tokenizer base vocabulary is {base_vocab}, expected at least {min_base_vocab} "
                          f"(action ids are the last {DEFAULT_N_BINS} ids of the base vocabulary)")
    if model_vocab < base_vocab:
        raise PolicyError(f"model output vocabulary ({model_vocab}) is smaller than the tokenizer's base "
                          f"vocabulary ({base_vocab}): the action ids cannot all be generated")


def check_layerscale(model: Any) -> None:
    """Raise ``PolicyError`` when LayerScale ``gamma`` weights are all at one constant value.

    Trained LayerScale weights vary per channel; a constant vector means the checkpoint's
    ``gamma`` tensors were not loaded (some transformers versions rename ``gamma`` keys on load)
    and the vision tower would silently produce garbage.
    """
    stuck = []
    for name, param in model.named_parameters():
        if _LAYERSCALE_NAME.fullmatch(name.rsplit(".", 1)[-1]) and param.numel() > 1:
            flat = param.detach().reshape(-1)
            if bool((flat == flat[0]).all()):
                stuck.append(f"{name} (all {float(flat[0]):.3g})")
    if stuck:
        more = f" and {len(stuck) - 3} more" if len(stuck) > 3 else ""
        raise PolicyError("vision tower LayerScale weights are at their initial value, so the checkpoint's "
                          f"gamma weights were not loaded: {', '.join(stuck[:3])}{more}; use a transformers "
                          f"version in >={MAGMA_TRANSFORMERS_RANGE[0]},<{MAGMA_TRANSFORMERS_RANGE[1]} that loads them")


def _model_type(model: str, revision: str | None) -> str:
    from transformers import PretrainedConfig

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(model, revision=revision)
    except (OSError, ValueError) as exc:
        raise PolicyConfigError(f"model: cannot find {model!r} (a local model directory, or a hub id reachable "
                                f"from here or in the local cache): {_one_line(exc)}") from None
    return str(config_dict.get("model_type", ""))


def _output_vocab_size(model: Any) -> int:
    """Rows of the output layer, or the (text) config's vocab_size when the model does not expose it."""
    head = model.get_output_embeddings()
    if head is not None and hasattr(head, "out_features"):
        return int(head.out_features)
    config = getattr(model, "config", None)
    for source in (getattr(config, "text_config", None), config):
        size = getattr(source, "vocab_size", None)
        if isinstance(size, int):
            return size
    raise PolicyError(f"{type(model).__name__}: cannot tell the size of its output vocabulary "
                      "(no output embeddings and no vocab_size in its config)")


def _eos_ids(adapter: ModelAdapter) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(adapter.model, "generation_config", None), adapter.tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return ids


def _sampling(temperature: float, top_p: float) -> dict[str, Any]:
    if temperature == 0.0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}


def _check_temperature(temperature: float) -> None:
    if not math.isfinite(temperature) or temperature < 0:
        raise PolicyConfigError(f"temperature: must be >= 0, got {temperature!r}")


def _check_messages(messages: list[dict]) -> None:
    if not isinstance(messages, list) or not messages:
        raise PolicyConfigError("messages: expected a non-empty list of {'role', 'content'} dicts")
    for i, m in enumerate(messages):
        if (not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
                or not isinstance(m.get("content"), str)):
            raise PolicyConfigError(f"messages[{i}]: expected {{'role': system|user|assistant, 'content': str}}, "
                                    f"got {m!r:.200}")


def _to_pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(image), mode="RGB")
