"""A training example: the model input the ``magma`` backend sends for a frame
(``policy.magma.frame_inputs``: profile resize, prompt template, chat template, crop processing),
followed by the frame's 7 encoded action ids and the end-of-turn token; the labels mask every
position but that answer. torch is imported by the functions that use it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..actions.decoder import ActionDecoder
from ..actions.profiles import RobotProfile
from ..actions.tokenizer import ActionTokenizer
from ..policy.magma import frame_inputs
from ..policy.vlm import VLMRunner
from .dataset import TrainFrame

IGNORE_INDEX = -100  # label of a position the loss does not cover (torch's cross-entropy default)
END_OF_TURN = "<|eot_id|>"  # Llama-3's end of a chat turn, which ends Magma's answers


@dataclass
class Example:
    """Model inputs (batch of one, on the model's device) and labels of the same length as ``input_ids``."""

    inputs: dict[str, Any]
    labels: Any


class ExampleBuilder:
    """Turns frames into examples for one loaded model and robot profile."""

    def __init__(self, runner: VLMRunner, profile: RobotProfile) -> None:
        self.runner = runner
        self.profile = profile
        self.decoder = ActionDecoder(profile.stats, ActionTokenizer(runner.vocab_size))
        self.end_of_turn = end_of_turn_id(runner.adapter.tokenizer)

    def answer(self, action: np.ndarray) -> list[int]:
        """The ids the model must produce for ``action``: 7 action ids, then the end-of-turn token."""
        return [int(i) for i in self.decoder.encode(action)] + [self.end_of_turn]

    def example(self, frame: TrainFrame) -> Example:
        """The example of one frame."""
        import torch

        prompt = frame_inputs(self.runner, frame.image, frame.instruction, self.profile).inputs
        ids = prompt["input_ids"]
        answer = torch.tensor([self.answer(frame.action)], dtype=ids.dtype, device=ids.device)
        inputs = dict(prompt)
        inputs["input_ids"] = torch.cat([ids, answer], dim=1)
        inputs["attention_mask"] = torch.cat([prompt["attention_mask"], torch.ones_like(answer)], dim=1)
        labels = torch.cat([torch.full_like(ids, IGNORE_INDEX), answer], dim=1)
        return Example(inputs, labels)

    def batch(self, frames: Sequence[TrainFrame]) -> tuple[dict[str, Any], Any]:
        """Model inputs and labels of several frames, left-padded as the backend batches requests
        (so every answer ends at the last position)."""
        import torch

        examples = [self.example(f) for f in frames]
        inputs = self.runner.adapter.collate([e.inputs for e in examples])
        length = inputs["input_ids"].shape[1]
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long, device=examples[0].labels.device)
        for row, example in enumerate(examples):
            labels[row, length - example.labels.shape[1]:] = example.labels[0]
        return inputs, labels


def end_of_turn_id(tokenizer: Any) -> int:
    """The end-of-turn token id (``<|eot_id|>``, else the tokenizer's end-of-sequence id)."""
    token = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(token, int) and token != tokenizer.unk_token_id and token >= 0:
        return token
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has neither <|eot_id|> nor an end-of-sequence token")
    return int(tokenizer.eos_token_id)


def answer_loss(model: Any, inputs: dict[str, Any], labels: Any) -> Any:
    """Mean cross-entropy of the labelled (answer) positions. The answers are at the end of every
    row, so only the logits of the last positions are computed (image tokens expand the prompt,
    never the answer)."""
    import torch
    import torch.nn.functional as F

    labelled = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    keep = labels.shape[1] - int(labelled[0])
    logits = model(**inputs, logits_to_keep=keep + 1)[:, :-1]
    targets = labels[:, -keep:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).to(torch.long),
                           ignore_index=IGNORE_INDEX)
