"""Parts of ``magma-ros finetune``: the split by episode, the learning-rate schedule, and training
the projector besides LoRA (saved beside the adapter, merged into the checkpoint)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from finetune_support import ACTION_TOPIC, build_inputs
from safetensors.torch import load_file

from magma_ros.actions import load_profile
from magma_ros.cli import main
from magma_ros.eval.stream import ActionSource
from magma_ros.interface import IMAGE, INSTRUCTION
from magma_ros.train.dataset import BagInput, read_frames, split_by_episode
from magma_ros.train.lora import NON_LORA_FILE
from magma_ros.train.trainer import lr_factor


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("finetune_parts"))


def test_validation_split_holds_whole_episodes_out(task):
    frames = read_frames([task.train_bag], BagInput(IMAGE.absolute, INSTRUCTION.absolute, None,
                                                    ActionSource(ACTION_TOPIC)), load_profile(task.profile))
    assert len(frames.frames) == 200 and len(frames.episodes) == 8
    train, val = split_by_episode(frames, 0.25, seed=0)
    assert len(val.episodes) == 2 and not set(val.episodes) & set(train.episodes)
    assert len(train.frames) + len(val.frames) == 200
    assert all(len([f for f in val.frames if f.episode == e]) == 25 for e in val.episodes)  # whole episodes
    again, _ = split_by_episode(frames, 0.25, seed=0)
    assert again.episodes == train.episodes
    assert {tuple(split_by_episode(frames, 0.25, seed=s)[1].episodes) for s in range(6)} != {tuple(val.episodes)}
    assert split_by_episode(frames, 0.0, seed=0)[1].frames == []


def test_learning_rate_warms_up_then_decays_to_zero_on_a_cosine():
    total, warmup = 100, 10
    factors = [lr_factor(s, warmup, total) for s in range(total)]
    assert factors[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1:]))
    assert lr_factor(total, warmup, total) == pytest.approx(0.0)
    assert lr_factor(0, 0, total) == pytest.approx(1.0)


def test_train_projector_saves_it_beside_the_adapter_and_merges_it(task, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["finetune", "--model", str(task.base), "--bags", str(task.train_bag), "--robot", str(task.profile),
                 "--action-topic", ACTION_TOPIC, "--out", str(out), "--device", "cpu", "--val-fraction", "0",
                 "--max-steps", "2", "--batch-size", "4", "--learning-rate", "1e-2", "--train-projector", "--quiet"])
    assert code == 0, capsys.readouterr().err
    extra = load_file(str(out / "adapter" / NON_LORA_FILE))
    assert extra and all(name.startswith("multi_modal_projector.") for name in extra)
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    name = "multi_modal_projector.proj.0.weight"
    merged = load_file(str(out / index[name]))[name]
    base = load_file(str(task.base / index[name]))[name]
    assert torch.equal(merged, extra[name]) and not torch.equal(merged, base)
    vision = "vision_tower.clip_vision_model.trunk.stem.0.weight"
    assert torch.equal(load_file(str(out / index[vision]))[vision], load_file(str(task.base / index[vision]))[vision])
