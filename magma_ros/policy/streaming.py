"""Free-form generation streamed as text pieces: ``generate`` runs in a helper thread feeding
transformers' ``TextIteratorStreamer``; closing the consumer's iterator stops the generation at
its next step, and a failure in the helper thread is raised to the consumer.

torch and transformers are imported when a stream starts.
"""
from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterator

from .action_decoding import generation_failed, sampling_kwargs
from .hf_adapters import ModelAdapter


def stream_text(adapter: ModelAdapter, inputs: Callable[[], dict[str, Any]],
                session: Callable[[], AbstractContextManager], model_name: str, max_new_tokens: int,
                temperature: float, top_p: float, pad_id: int | None) -> Iterator[str]:
    """Pieces of generated text. ``inputs`` builds the model inputs when the stream starts;
    ``session`` holds the model for the whole generation (the runner's lock)."""
    import torch
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    model_inputs = inputs()
    streamer = TextIteratorStreamer(adapter.tokenizer, skip_prompt=True, skip_special_tokens=True)
    cancel = threading.Event()
    failure: list[BaseException] = []
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_beams=1, use_cache=True, streamer=streamer,
                                  stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]), pad_token_id=pad_id)
    kwargs.update(sampling_kwargs(temperature, top_p))

    def run() -> None:
        try:
            with torch.inference_mode():
                target, call_inputs, _ = adapter.generate_call(model_inputs)
                target.generate(**call_inputs, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the consumer below, never swallowed
            failure.append(exc)
            streamer.end()

    with session():
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
        raise generation_failed(model_name, failure[0]) from failure[0]


class _Cancelled:
    """Stopping criterion that ends generation once ``event`` is set (consumer went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
