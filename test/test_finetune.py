"""``magma-ros finetune`` on a tiny Magma in the official layout, on CPU: the training input is the
inference input, the model learns a rule that needs the image and the instruction (held-out
episodes), the merged checkpoint equals base + adapter and loads in eval and serve."""
from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest
import torch
from finetune_support import ACTION_TOPIC, ACTIONS, INSTRUCTIONS, SIZE, frame_image, held_out_frames
from safetensors import safe_open
from serve_support import CliServer, png_data_url
from tiny_magma import BASE_VOCAB, build_tiny_magma

from magma_ros.actions import ActionDecoder, ActionTokenizer, TextTokenizer, load_profile, text_ids_to_action_ids
from magma_ros.cli import main
from magma_ros.policy import BackendConfig
from magma_ros.policy.magma import MagmaPolicy
from magma_ros.policy.vlm import VLMRunner
from magma_ros.train.dataset import TrainFrame
from magma_ros.train.examples import IGNORE_INDEX, ExampleBuilder, answer_loss
from magma_ros.train.lora import apply_adapter
from magma_ros.train.validation import predict_ids

CPU32 = {"device": "cpu", "dtype": "float32"}
RNG = np.random.default_rng(5)


@pytest.fixture(scope="module")
def base_runner(tmp_path_factory):
    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(build_tiny_magma(tmp_path_factory.mktemp("b"))),
                                          **CPU32))
    yield runner
    runner.close()


def test_training_input_is_the_inference_input_token_for_token_and_pixel_for_pixel(base_runner, tmp_path):
    """The example of a frame = what the magma backend sends for it + 7 action ids + end of turn;
    the labels cover that answer only. The camera image is not at the profile's size, so the
    resize is part of what must match."""
    from finetune_support import write_profile

    profile = load_profile(write_profile(tmp_path / "p.yaml"))
    sent = []
    decode = base_runner.decode_actions

    def recording(prepared):
        sent.extend(prepared)
        return decode(prepared)

    base_runner.decode_actions = recording
    frames = [TrainFrame(RNG.integers(0, 256, (72 + 8 * i, 96, 3), dtype=np.uint8), instruction,
                         np.array(ACTIONS[("red", side)]), ("bag", 0))
              for i, (side, instruction) in enumerate(INSTRUCTIONS.items())]
    try:
        for frame in frames:
            MagmaPolicy(base_runner, profile).predict(frame.image, frame.instruction)
    finally:
        del base_runner.decode_actions
    builder = ExampleBuilder(base_runner, profile)
    decoder = ActionDecoder(profile.stats, ActionTokenizer(BASE_VOCAB))
    eot = base_runner.adapter.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    for frame, prepared in zip(frames, sent):
        example = builder.example(frame)
        inference = prepared.inputs
        prompt_len = inference["input_ids"].shape[1]
        answer = decoder.encode(frame.action).tolist() + [eot]
        assert example.inputs["input_ids"][0, :prompt_len].tolist() == inference["input_ids"][0].tolist()
        assert example.inputs["input_ids"][0, prompt_len:].tolist() == answer
        assert torch.equal(example.inputs["pixel_values"], inference["pixel_values"])
        assert torch.equal(example.inputs["image_sizes"], inference["image_sizes"])
        assert example.inputs["pixel_values"].shape[-1] == SIZE  # resized to the profile's 64 x 64: one crop
        assert example.labels[0, :prompt_len].eq(IGNORE_INDEX).all()
        assert example.labels[0, prompt_len:].tolist() == answer
    text = base_runner.adapter.tokenizer.decode(sent[0].inputs["input_ids"][0])
    assert "What action should the robot take to push the block to the left?" in text and "<image>" in text
    inputs, labels = builder.batch(frames)  # left-padded like a batch of requests: answers at the end
    assert labels[:, -8:].ne(IGNORE_INDEX).all() and labels[:, :-8].eq(IGNORE_INDEX).all()
    assert inputs["input_ids"][:, -8:].tolist() == labels[:, -8:].tolist()
    assert torch.isfinite(answer_loss(base_runner.adapter.model, inputs, labels))


def test_finetune_learns_a_rule_of_image_and_instruction_on_held_out_episodes(finetuned):
    validations = finetuned.validations()
    before, after = validations[0], validations[-1]
    assert before["step"] == 0 and before["val"]["frames"] == 40
    assert before["val"]["exact_bin"]["all"] <= 0.05, before
    assert after["step"] > 0 and after["val"]["exact_bin"]["all"] >= 0.9, after
    records = [json.loads(line) for line in (finetuned.out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == after["step"] and losses[-1] < losses[0] / 10
    assert all({"lr", "samples_per_s", "epoch"} <= set(r) for r in records if "loss" in r)


def test_output_is_a_complete_checkpoint_in_the_official_layout(finetuned):
    out, base = finetuned.out, finetuned.base
    assert not out.with_name(out.name + ".partial").exists()
    for path in base.iterdir():  # every non-weight file copied as it is
        if not path.name.endswith((".safetensors", ".index.json")):
            assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    base_index = json.loads((base / "model.safetensors.index.json").read_text())["weight_map"]
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert index == base_index  # the base's tensor names and shards
    for shard in set(index.values()):
        with safe_open(str(out / shard), "pt") as new, safe_open(str(base / shard), "pt") as old:
            assert set(new.keys()) == set(old.keys())
            for key in new.keys():
                assert new.get_slice(key).get_dtype() == old.get_slice(key).get_dtype()
                assert new.get_slice(key).get_shape() == old.get_slice(key).get_shape()
    changed = []
    with safe_open(str(out / index["language_model.model.layers.0.self_attn.q_proj.weight"]), "pt") as new, \
            safe_open(str(base / index["language_model.model.layers.0.self_attn.q_proj.weight"]), "pt") as old:
        for key in new.keys():
            if not torch.equal(new.get_tensor(key), old.get_tensor(key)):
                changed.append(key)
    assert changed and all("language_model.model.layers" in k for k in changed)  # only LoRA targets moved
    assert (out / "robot.yaml").read_bytes() == finetuned.profile.read_bytes()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "training.png").stat().st_size > 0


def test_merged_checkpoint_with_default_options_gives_the_ids_of_base_plus_adapter(finetuned):
    frames = held_out_frames()
    profile = load_profile(finetuned.out / "robot.yaml")
    merged = VLMRunner.load(BackendConfig(backend="magma", model=str(finetuned.out), device="cpu"))  # bfloat16
    try:
        merged_ids = predict_ids(merged, frames, profile, 8)
    finally:
        merged.close()
    base = VLMRunner.load(BackendConfig(backend="magma", model=str(finetuned.base), device="cpu"))
    try:
        apply_adapter(base.adapter.model, finetuned.out / "adapter")
        adapter_ids = predict_ids(base, frames, profile, 8)
    finally:
        base.close()
    assert merged_ids.tolist() == adapter_ids.tolist()
    truth = ActionDecoder(profile.stats, ActionTokenizer(BASE_VOCAB)).encode(np.stack([f.action for f in frames]))
    assert np.mean(np.all(merged_ids == truth, axis=1)) >= 0.9


def test_eval_scores_the_finetuned_directory(finetuned, tmp_path, capsys):
    out = finetuned.out
    code = main(["eval", str(finetuned.val_bag), "--backend", "magma", "--model", str(out), "--robot",
                 str(out / "robot.yaml"), "--action-topic", ACTION_TOPIC, "--device", "cpu", "--dtype", "float32",
                 "--out", str(tmp_path / "eval"), "--quiet", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["frames"]["evaluated"] == 40
    assert report["overall"]["exact_bin"]["all"] >= 0.9


def test_serve_runs_the_finetuned_directory(finetuned, console_script, tmp_path):
    server = CliServer(console_script("magma-ros"), ["--model", str(finetuned.out), "--device", "cpu", "--dtype",
                                                     "float32", "--served-model-name", "mine", "--robot",
                                                     str(finetuned.out / "robot.yaml")], tmp_path / "serve.log")
    try:
        server.wait_healthy()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model="mine", messages=[
            {"role": "user", "content": [{"type": "text", "text": "What action should the robot take to "
                                                                  f"{INSTRUCTIONS['left']}?"},
                                         {"type": "image_url", "image_url": {"url": png_data_url(SIZE, SIZE)}}]}])
        tok = TextTokenizer(finetuned.out)
        ids = text_ids_to_action_ids(reply.choices[0].message.content, tok, ActionTokenizer(tok.base_vocab_size))
        # png_data_url is a red image: the fine-tuned rule says red + left
        profile = load_profile(finetuned.out / "robot.yaml")
        expected = ActionDecoder(profile.stats, ActionTokenizer(BASE_VOCAB)).encode(np.array(ACTIONS[("red", "left")]))
        assert ids.tolist() == expected.tolist()
        # the fine-tuned profile, loaded with --robot, is a robot_type by its name
        decoded = httpx.post(server.url + "/v1/action-tokens", json={
            "text": reply.choices[0].message.content, "robot_type": "tiny_arm"}, timeout=30)
        assert decoded.status_code == 200, decoded.text
        want = ActionDecoder(profile.stats, ActionTokenizer(BASE_VOCAB)).decode_ids(expected)
        assert list(decoded.json().values()) == pytest.approx(want.tolist())
    finally:
        code = server.stop()
    assert code == 0, server.output()


def test_serve_refuses_a_robot_profile_it_cannot_read(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    code = main(["serve", "--no-model", "--tokenizer", str(tmp_path), "--robot", str(missing)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"magma-ros serve: error: --robot: {missing}: robot profile file not found"


def test_node_runs_the_finetuned_directory_with_its_profile_by_path(finetuned, console_script, tmp_path):
    """magma_node with backend magma, model OUT and robot OUT/robot.yaml (what the launch file passes
    for model:=OUT robot:=OUT/robot.yaml) acts on the fine-tuned rule: blue + right."""
    from node_support import assert_node_publishes, topics_under
    from sensor_msgs.msg import Image

    pixels = frame_image("blue", np.random.default_rng(3))
    image = Image(height=SIZE, width=SIZE, encoding="rgb8", step=SIZE * 3, data=pixels.tobytes())
    profile = load_profile(finetuned.out / "robot.yaml")
    expected_ids = ActionDecoder(profile.stats, ActionTokenizer(BASE_VOCAB)).encode(
        np.array(ACTIONS[("blue", "right")]))
    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(finetuned.out), **CPU32))
    try:
        ids = MagmaPolicy(runner, profile).predict(pixels, INSTRUCTIONS["right"]).token_ids
    finally:
        runner.close()
    assert ids.tolist() == expected_ids.tolist()
    expected = ActionDecoder(profile.stats, ActionTokenizer(BASE_VOCAB)).decode_ids(ids)
    params = {"backend": "magma", "model": str(finetuned.out), "robot": str(finetuned.out / "robot.yaml"), **CPU32,
              "enabled_on_start": True, "instruction": INSTRUCTIONS["right"], "action_timeout_s": 30.0}
    assert_node_publishes(console_script, "finetuned_magma_node", params, topics_under("ft"), tmp_path, image,
                          expected)


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    """The memory saver used on CUDA (recompute each decoder layer in the backward pass) changes
    nothing but memory: same loss, same LoRA gradients (checked here on the CPU)."""
    from finetune_support import write_profile

    from magma_ros.train.lora import add_lora
    from magma_ros.train.settings import TrainSettings
    from magma_ros.train.trainer import enable_checkpointing

    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(build_tiny_magma(tmp_path / "m")), **CPU32))
    try:
        model = runner.adapter.model
        torch.manual_seed(0)
        add_lora(model, TrainSettings())
        builder = ExampleBuilder(runner, load_profile(write_profile(tmp_path / "p.yaml")))
        inputs, labels = builder.batch(held_out_frames(4))
        model.train()
        grads = []
        for checkpointing in (False, True):
            if checkpointing:
                enable_checkpointing(model.language_model)
            model.zero_grad()
            loss = answer_loss(model, inputs, labels)
            loss.backward()
            grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
        assert model.language_model.model.gradient_checkpointing
        assert any(g.abs().sum() > 0 for g in grads[0])
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
    finally:
        runner.close()
