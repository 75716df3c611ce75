"""LoRA fine-tuning (``magma-ros finetune``). Prints:
1. MEASURED on this machine: the acceptance test's run (tiny Magma in the official layout, 200
   training frames, 40 held-out, rank 32 on every language-model linear layer, 3 epochs, CPU,
   float32): wall time, training samples/s, peak host memory, held-out all-7-bins-exact before/after;
2. COMPUTED (not measured) for Magma-8B: parameters (counted on the real architecture built without
   memory), LoRA parameters for the same targets at rank 32, and the GPU memory of LoRA training in
   bfloat16 with gradient checkpointing: weights, adapter + gradients + AdamW state, activations
   per sample; and the same for QLoRA (``--quantization nf4``): the decoder layers' linear weights
   in NF4, the rest of the language model in float32 (peft's k-bit preparation), the vision tower
   and projector in bfloat16.

    python bench/finetune.py [--epochs 3] [--rank 32]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "test"))

# Magma-8B: Llama-3-8B language model, ConvNeXt-XXLarge tower, 2-layer MLP projector (its config.json)
LLAMA3_8B = {"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "max_position_embeddings": 8192, "tie_word_embeddings": False}
MAGMA_8B_VISION = {"vision_backbone": "convnextxxlarge", "mm_hidden_size": 3072, "hidden_size": 4096,
                   "mm_projector_type": "mlp2x_gelu", "img_anyres_strategy": "crop",
                   "vision_feature_layer": "clip_vis_dense"}
SEQUENCE = 320 + 8  # prompt (~272 image tokens of one crop + ~48 text, as in bench/serve_fleet.py) + answer
ANSWER_LOGITS = 9  # the loss computes logits for the answer positions only (logits_to_keep)
GIB = 2**30
# NF4 with double quantization: 4 bits a weight, one 8-bit scale per 64 weights, one float32 per 256 scales
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)


def measured(epochs: int) -> None:
    from finetune_support import TRAIN_FLAGS, build_inputs

    from magma_ros.cli import main

    root = Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    run = build_inputs(root)
    flags = list(TRAIN_FLAGS)
    flags[flags.index("--epochs") + 1] = str(epochs)
    t0 = time.perf_counter()
    code = main(["finetune", *run.flags()[:-len(TRAIN_FLAGS)], *flags, "--out", str(run.out)])
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"magma-ros finetune exited {code}")
    records = [json.loads(line) for line in (run.out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    val = [r["val"]["exact_bin"]["all"] for r in records if "val" in r]
    train_s = sum(8 / r["samples_per_s"] for r in steps)  # batch size 8 per step
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss / 1024
    print("MEASURED (this machine, CPU, float32): tiny Magma, 200 training frames, 40 held-out, "
          f"rank 32, {epochs} epochs, batch 8")
    print(f"  whole command (load, read bags, train, validate twice, merge, write): {wall:.1f} s wall, "
          f"{usage.ru_utime + usage.ru_stime:.1f} s CPU time of the whole process (on a quiet 2-core machine the "
          "wall time lies between half that and all of it)")
    print(f"  training: {len(steps)} steps in {train_s:.1f} s = {8 * len(steps) / train_s:.1f} samples/s "
          f"(median step {statistics.median(r['samples_per_s'] for r in steps):.1f} samples/s)")
    print(f"  peak host memory (whole process): {peak:.0f} MiB")
    print(f"  held-out all 7 bins exact: {val[0]:.3f} before, {val[-1]:.3f} after")


def computed(rank: int) -> None:
    import torch
    from torch import nn

    from magma_ros.policy.magma_native.config import MagmaSettings, _vision_settings
    from magma_ros.policy.magma_native.model import MagmaForActions

    vision = _vision_settings(Path("Magma-8B/config.json"), MAGMA_8B_VISION, LLAMA3_8B)
    with torch.device("meta"):
        model = MagmaForActions(MagmaSettings(LLAMA3_8B, vision, 128257), "sdpa")
    total = sum(p.numel() for p in model.parameters())
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("vision_tower", "multi_modal_projector", "language_model")}
    targets = [m for _, m in model.language_model.model.layers.named_modules() if isinstance(m, nn.Linear)]
    lora = sum(rank * (m.in_features + m.out_features) for m in targets)
    h, inter, layers = LLAMA3_8B["hidden_size"], LLAMA3_8B["intermediate_size"], LLAMA3_8B["num_hidden_layers"]
    kv = h // LLAMA3_8B["num_attention_heads"] * LLAMA3_8B["num_key_value_heads"]
    weights = total * 2
    adapter = lora * (4 + 4 + 8)  # float32 weights, gradients, AdamW's two moments
    per_token_layer = (7 * h + 3 * kv + 4 * inter) * 2  # bf16 tensors one decoder layer keeps for its backward
    checkpoints = layers * SEQUENCE * h * 2  # each layer's input, kept by gradient checkpointing
    recompute = SEQUENCE * per_token_layer  # one layer's activations at a time during the backward
    logits = ANSWER_LOGITS * LLAMA3_8B["vocab_size"] * 4 * 3  # float32 logits, softmax, gradient
    per_sample = checkpoints + recompute + logits
    without = layers * SEQUENCE * per_token_layer + logits
    print(f"\nCOMPUTED (not measured): Magma-8B, LoRA rank {rank} on every linear layer of the 32 decoder layers "
          f"(q,k,v,o,gate,up,down), {SEQUENCE} tokens per sample, bfloat16 weights, bf16 autocast")
    print(f"  parameters: {total / 1e9:.2f} B (vision tower {parts['vision_tower'] / 1e9:.2f} B, projector "
          f"{parts['multi_modal_projector'] / 1e6:.0f} M, language model {parts['language_model'] / 1e9:.2f} B)")
    print(f"  weights in bf16: {weights / GIB:.1f} GiB")
    print(f"  LoRA parameters: {lora / 1e6:.1f} M ({100 * lora / total:.2f} %); with gradients and AdamW state "
          f"(float32): {adapter / GIB:.2f} GiB")
    print(f"  activations per sample with gradient checkpointing: {per_sample / GIB:.2f} GiB (layer inputs "
          f"{checkpoints / GIB:.2f} + one layer recomputed {recompute / GIB:.2f} + answer logits {logits / GIB:.3f}); "
          f"without checkpointing {without / GIB:.2f} GiB")
    for batch in (1, 4, 8, 16):
        need = weights + adapter + batch * per_sample
        print(f"  batch {batch:>2}: {need / GIB:.1f} GiB + CUDA context and allocator slack (~1-2 GiB)")
    linear = sum(m.weight.numel() for m in targets)
    nf4 = linear * NF4_BYTES_PER_WEIGHT
    lm_rest = (parts["language_model"] - linear) * 4  # embeddings, norms, lm_head upcast to float32
    vision = (parts["vision_tower"] + parts["multi_modal_projector"]) * 2
    qlora = nf4 + lm_rest + vision
    print("\nCOMPUTED (not measured): QLoRA (--quantization nf4), same adapter, batch and sequence")
    print(f"  weights: {qlora / GIB:.1f} GiB (decoder linear layers in NF4 {nf4 / GIB:.2f} GiB: {linear / 1e9:.2f} B "
          f"weights at {NF4_BYTES_PER_WEIGHT:.3f} bytes; rest of the language model in float32 "
          f"{lm_rest / GIB:.2f} GiB; "
          f"vision tower + projector in bf16 {vision / GIB:.2f} GiB)")
    for batch in (1, 4, 8, 16):
        need = qlora + adapter + batch * per_sample
        print(f"  batch {batch:>2}: {need / GIB:.1f} GiB + CUDA context and allocator slack (~1-2 GiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--computed-only", action="store_true", help="skip the measured run")
    args = parser.parse_args()
    if not args.computed_only:
        measured(args.epochs)
    computed(args.rank)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
