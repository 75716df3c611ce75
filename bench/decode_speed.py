"""Per-action latency: our constrained 7-token path versus plain ``model.generate`` with default
stopping, on a small Llama-architecture VLM (LLaVA layout) on CPU.

To make the comparison fair, the model is first trained for a few seconds to answer each prompt
with 7 action tokens and then end-of-sequence, as a real VLA does: plain ``generate`` then stops
at EOS by itself (max_new_tokens is only a safety cap). An untrained copy, which never emits EOS
and runs to the cap, is measured as well. Prints medians (ms) and ratios.

    python bench/decode_speed.py [--repeats 40] [--hidden 256] [--layers 4] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

from tiny_vlm import BASE_VOCAB, N_ACTION_BINS, build_tiny_vlm

from magma_ros.policy import BackendConfig
from magma_ros.policy.hf_adapters import to_pil
from magma_ros.policy.vlm import VLMRunner

PLAIN_CAP = 64  # max_new_tokens for plain generate: far more than 7 actions + EOS
INSTRUCTIONS = ["pick up the red block", "open the drawer", "put the spoon in the pot", "push the cloth left"]


def examples(seed: int = 0) -> list[tuple[np.ndarray, str, list[int]]]:
    """(image, prompt, 7 target action ids) for each instruction."""
    rng = np.random.default_rng(seed)
    out = []
    for instruction in INSTRUCTIONS:
        image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        target = rng.integers(BASE_VOCAB - N_ACTION_BINS, BASE_VOCAB, 7).tolist()
        out.append((image, f"What action should the robot take to {instruction}?", target))
    return out


def train_action_format(runner: VLMRunner, data, steps: int) -> float:
    """Teach the model to answer each example with its 7 action ids + EOS; returns the final loss."""
    model, adapter = runner.adapter.model, runner.adapter
    eos = runner.adapter.tokenizer.eos_token_id
    batches = []
    for image, prompt, target in data:
        inputs = adapter.inputs(to_pil(image), adapter.prompt([{"role": "user", "content": prompt}], True))
        answer = torch.tensor([target + [eos]])
        ids = torch.cat([inputs["input_ids"], answer], dim=1)
        labels = torch.full_like(ids, -100)
        labels[:, -answer.shape[1]:] = answer
        batches.append({**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        batch = batches[step % len(batches)]
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return loss.item()


def plain_generate(runner: VLMRunner, image: np.ndarray, prompt: str) -> np.ndarray:
    """What a caller without our runtime does: generate until EOS (or the cap), keep the new ids."""
    adapter = runner.adapter
    inputs = adapter.inputs(to_pil(image), adapter.prompt([{"role": "user", "content": prompt}], True))
    with torch.inference_mode():
        out = adapter.model.generate(**inputs, max_new_tokens=PLAIN_CAP, do_sample=False,
                                     pad_token_id=adapter.tokenizer.pad_token_id)
    return out[0, inputs["input_ids"].shape[-1]:].numpy()


def timed_action(runner: VLMRunner, decoder: str, image: np.ndarray, prompt: str) -> float:
    runner.decoder = decoder
    t0 = time.perf_counter()
    runner.action_ids(image, prompt)
    return time.perf_counter() - t0


def measure(runner: VLMRunner, data, repeats: int) -> dict[str, float]:
    """Median ms per action for each path (interleaved), and plain generate's mean new-token count."""
    times: dict[str, list[float]] = {"direct": [], "generate": [], "plain": []}
    plain_lengths = []
    for i in range(repeats):
        image, prompt, _ = data[i % len(data)]
        times["direct"].append(timed_action(runner, "direct", image, prompt))
        times["generate"].append(timed_action(runner, "generate", image, prompt))
        t0 = time.perf_counter()
        plain_lengths.append(len(plain_generate(runner, image, prompt)))
        times["plain"].append(time.perf_counter() - t0)
    runner.decoder = "direct"
    figures = {name: 1000 * statistics.median(values) for name, values in times.items()}
    figures["plain_tokens"] = statistics.mean(plain_lengths)
    return figures


def report(name: str, f: dict[str, float]) -> None:
    print(f"{name}:")
    print(f"  ours, KV-cached constrained loop (LLaVA default)   median {f['direct']:7.1f} ms")
    print(f"  ours, generate + action-only logits processor     median {f['generate']:7.1f} ms")
    print(f"  plain generate, default stopping ({f['plain_tokens']:.1f} new tokens) median {f['plain']:7.1f} ms")
    print(f"  ratio plain / loop {f['plain'] / f['direct']:.2f}x, plain / generate+processor "
          f"{f['plain'] / f['generate']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=256, help="text model hidden size")
    parser.add_argument("--layers", type=int, default=4, help="text model layers")
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 gives stable figures on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = examples()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_vlm(Path(tmp), hidden_size=args.hidden, layers=args.layers, weight_std=0.02)
        config = BackendConfig(backend="magma", model=str(path), device="cpu", dtype="float32")
        runner = VLMRunner.load(config)
        n_params = sum(p.numel() for p in runner.adapter.model.parameters())
        print(f"model: LLaVA layout, Llama text model hidden {args.hidden} x {args.layers} layers, "
              f"{n_params / 1e6:.2f} M parameters, vocab {BASE_VOCAB} base; CPU, {torch.get_num_threads()} threads, "
              f"{args.repeats} actions per path")
        report("untrained (plain generate never emits EOS, runs to the cap)", measure(runner, data, args.repeats))
        loss = train_action_format(runner, data, args.train_steps)
        hits = sum(plain_generate(runner, image, prompt).tolist() == target + [runner.adapter.tokenizer.eos_token_id]
                   for image, prompt, target in data)
        print(f"trained {args.train_steps} steps (loss {loss:.3f}): plain generate answers {hits}/{len(data)} "
              f"prompts with exactly their 7 action tokens + EOS")
        report("trained (plain generate stops at EOS)", measure(runner, data, args.repeats))
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
