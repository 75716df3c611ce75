"""Action rate of Magma-8B's real architecture on this machine's first CUDA GPU, without the weights.

Speed does not depend on the weights' values, so the native model (``magma_native``) is built with
Magma-8B's published sizes (Llama-3-8B text model, CLIP ConvNeXt-XXLarge tower, 2-layer GELU
projector) and random weights created directly on the GPU, tensor by tensor, through the same
quantizing path the checkpoint loader uses. For quantization none/int8/nf4 (int8/nf4 need
bitsandbytes; skipped with a message without it) and batch sizes 1, 2, 4, 8 it prints: time to
ready, peak GPU memory, median prefill (image tokens of one 256x256 frame + an instruction) and
median 7-token loop, actions/s, and the memory-bandwidth bound (weight bytes read per decoded
token / bandwidth; ``--bandwidth-gbs`` overrides the table below).

Needs only torch, transformers, safetensors and numpy; synthetic token ids, no tokenizer files, no
network: ``PYTHONPATH=. python3 bench/gpu_action_rate.py``. Without CUDA it says so and exits 0.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from magma_ros.policy.magma_native.config import CONVNEXT_VARIANTS, ImageSettings, MagmaSettings, VisionSettings

ACTION_TOKENS = 7
IMAGE_TOKEN = 128256  # an id past Llama-3's vocabulary, as Magma adds <image> to it
# Llama-3-8B (Magma-8B's text_config)
TEXT_CONFIG = {
    "model_type": "llama", "vocab_size": 128257, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
    "bos_token_id": 128000, "eos_token_id": 128009,
}
CROP_SIZE, MAX_CROPS = 512, 4          # Magma-8B's image processor: 512 px crops, at most 4
FRAME = (256, 256)                     # the camera frame of one action (width, height)
INSTRUCTION_TOKENS = 40                # Magma's system message, chat headers and a short instruction (estimate)
# Memory bandwidth (GB/s) of common GPUs, matched against torch.cuda.get_device_name() (first match wins)
GPU_BANDWIDTH_GBS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 2000), ("H100 NVL", 3900), ("H100", 3350), ("H200", 4800), ("A100-SXM4-80GB", 2039),
    ("A100 80GB", 1935), ("A100", 1555), ("L40S", 864), ("L40", 864), ("L4", 300), ("A10G", 600), ("A10", 600),
    ("T4", 320), ("RTX 6000 Ada", 960), ("RTX A6000", 768), ("RTX 5090", 1792), ("RTX 4090", 1008),
    ("RTX 4080", 717), ("RTX 4070 Ti", 504), ("RTX 4070", 504), ("RTX 4060 Ti", 288), ("RTX 3090", 936),
    ("RTX 3080", 760), ("RTX 3060", 360), ("AGX Orin", 204.8), ("Orin NX", 102.4), ("Orin Nano", 68),
)


def magma_8b_settings(text: dict[str, Any] | None = None, depths: tuple[int, ...] | None = None,
                      dims: tuple[int, ...] | None = None) -> MagmaSettings:
    """Magma-8B's sizes (or smaller ones, for tests): ConvNeXt-XXLarge unless ``depths``/``dims``."""
    text = dict(TEXT_CONFIG if text is None else text)
    d, w, eps = CONVNEXT_VARIANTS["convnextxxlarge"]
    depths, dims = depths or d, dims or w
    vision = VisionSettings(depths=depths, dims=dims, norm_eps=eps, mm_hidden_size=dims[-1],
                            hidden_size=int(text["hidden_size"]), projector_depth=2, anyres_strategy="crop",
                            use_im_start_end=False)
    return MagmaSettings(text_config=text, vision=vision, image_token_index=int(text["vocab_size"]) - 1)


def build_random_model(settings: MagmaSettings, device: str, dtype: Any, quantization: str = "none",
                       seed: int = 0) -> Any:
    """The native model with random weights made on ``device`` one tensor at a time (quantized
    on arrival, as the checkpoint loader does), so memory never holds more than one extra tensor."""
    import torch
    from torch import nn
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from magma_ros.policy.magma_native.model import MagmaForActions

    with torch.device("meta"):
        model = MagmaForActions(settings, "sdpa")
    quantizer = None
    if quantization != "none":
        from magma_ros.policy.magma_native.quantization import Quantizer

        quantizer = Quantizer(quantization, device, dtype)
        quantizer.prepare(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, param in list(model.named_parameters()):
        if param.dim() >= 2:
            tensor = torch.randn(param.shape, generator=gen, device=device, dtype=dtype) * 0.02
        else:  # norms, biases, LayerScale: ones keep activations in range
            tensor = torch.ones(param.shape, device=device, dtype=dtype)
        if quantizer is None or not quantizer.assign(name, tensor):
            owner, _, leaf = name.rpartition(".")
            model.get_submodule(owner)._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
        del tensor
    model.language_model.model.rotary_emb = LlamaRotaryEmbedding(config=model.text_config).to(device)
    return model.eval()


def image_grid() -> tuple[int, int]:
    """(rows, columns) of Magma's crop grid for one ``FRAME``."""
    from magma_ros.policy.magma_native.processing import best_grid

    settings = ImageSettings(CROP_SIZE, MAX_CROPS, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return best_grid(FRAME[0], FRAME[1], settings)


def synthetic_inputs(settings: MagmaSettings, batch: int, device: str, dtype: Any, crop: int = CROP_SIZE,
                     text_tokens: int = INSTRUCTION_TOKENS) -> dict[str, Any]:
    """A batch of identical-length prompts: ``text_tokens`` random ids around one image token, and
    random pixels for the crop grid of one frame."""
    import torch

    rows, cols = image_grid()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128000 if settings.text_config["vocab_size"] > 128000 else 16, (batch, text_tokens),
                        generator=gen)
    ids[:, 5] = settings.image_token_index
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": torch.randn(batch, rows * cols, 3, crop, crop, generator=gen).to(device, dtype),
            "image_sizes": torch.tensor([[[rows, cols]]] * batch, device=device)}


def decode_loop(model: Any, logits: Any, state: Any) -> Any:
    """The backend's 7-token loop after a prefill (greedy; a slice of action-like ids)."""
    import torch

    ids = []
    for step in range(ACTION_TOKENS):
        token = logits[:, -256:].argmax(dim=-1, keepdim=True) + (logits.shape[-1] - 256)
        ids.append(token)
        if step + 1 < ACTION_TOKENS:
            logits = model.step(token, state)
    return torch.cat(ids, dim=1)


def decoders(model: Any, device: str, compile_step: bool) -> list[tuple[str, Any]]:
    """(name, object with prefill/step): the default loop, and with ``compile_step`` the backend's
    ``compile: true`` loop (static KV cache, compiled step)."""
    out: list[tuple[str, Any]] = [("eager", model)]
    if compile_step:
        from magma_ros.policy.magma_native.static_decoding import StaticDecoder

        out.append(("compiled", StaticDecoder(model, True, device)))
    return out


def time_action(model: Any, inputs: dict[str, Any], repeats: int, sync: Callable[[], None]) -> tuple[float, float]:
    """Median seconds of the prefill and of the 7-token loop (after one warm-up action);
    ``model``: anything with the native model's ``prefill``/``step``."""
    import torch

    prefill_s, loop_s = [], []
    with torch.inference_mode():
        for i in range(repeats + 1):
            sync()
            t0 = time.perf_counter()
            logits, state = model.prefill(**inputs)
            sync()
            t1 = time.perf_counter()
            decode_loop(model, logits, state)
            sync()
            t2 = time.perf_counter()
            if i:
                prefill_s.append(t1 - t0)
                loop_s.append(t2 - t1)
    return statistics.median(prefill_s), statistics.median(loop_s)


def decoded_weight_bytes(model: Any) -> int:
    """Bytes of weights one decoding step reads: the language model's layers, final norm and output layer."""
    from magma_ros.policy.magma_native.quantization import layer_bytes

    lm = model.language_model
    modules = [m for m in lm.model.layers.modules() if not list(m.children())]
    return sum(layer_bytes(m) for m in modules) + layer_bytes(lm.model.norm) + layer_bytes(lm.lm_head)


def bandwidth_gbs(device_name: str, override: float | None) -> tuple[float | None, str]:
    """(GB/s, where it came from) for ``device_name``; None when unknown and not given."""
    if override is not None:
        return override, "--bandwidth-gbs"
    for key, value in GPU_BANDWIDTH_GBS:
        if key.lower() in device_name.lower():
            return value, f"table entry {key!r}"
    return None, "unknown GPU: pass --bandwidth-gbs"


def step_floor_seconds(weight_bytes: int, gbs: float) -> float:
    """The bandwidth floor of one decoding step: every weight it uses read once."""
    return weight_bytes / (gbs * 1e9)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: PYTHONPATH=. python3 bench/gpu_action_rate.py --quantization nf4 --batch-sizes 1,8")
    parser.add_argument("--quantization", default="none,int8,nf4", help="comma-separated: none, int8, nf4")
    parser.add_argument("--batch-sizes", default="1,2,4,8", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed actions per row (after one warm-up)")
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help="the GPU's memory bandwidth, GB/s")
    parser.add_argument("--compile", action="store_true",
                        help="also time the backend's compile: true loop (static KV cache, CUDA graphs)")
    args = parser.parse_args(argv)
    try:
        args.quantization = [q.strip() for q in args.quantization.split(",") if q.strip()]
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batch-sizes: comma-separated integers, got {args.batch_sizes!r}")
    bad = [q for q in args.quantization if q not in ("none", "int8", "nf4")]
    if bad or not args.quantization:
        parser.error(f"--quantization: none, int8 or nf4, got {bad or 'nothing'}")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or args.repeats < 1:
        parser.error("--batch-sizes and --repeats must be >= 1")
    if args.bandwidth_gbs is not None and not args.bandwidth_gbs > 0:
        parser.error("--bandwidth-gbs must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_action_rate: no CUDA device here (torch {torch.__version__}, CUDA build: "
              f"{torch.version.cuda or 'none'}); nothing measured. Run it on the GPU machine.")
        return 0
    device, dtype = "cuda:0", torch.bfloat16
    name = torch.cuda.get_device_name(0)
    gbs, source = bandwidth_gbs(name, args.bandwidth_gbs)
    settings = magma_8b_settings()
    rows, cols = image_grid()
    image_tokens = rows * (cols * CROP_SIZE // 32 + 1) * (CROP_SIZE // 32)
    print(f"GPU: {name}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB; bandwidth "
          f"{'?' if gbs is None else f'{gbs:g} GB/s'} ({source}); torch {torch.__version__}")
    print(f"Magma-8B architecture, random weights, bfloat16 compute; prompt = {image_tokens} image tokens "
          f"({FRAME[0]}x{FRAME[1]} frame, {rows}x{cols} crops of {CROP_SIZE}) + {INSTRUCTION_TOKENS} text tokens; "
          f"medians of {args.repeats} actions")
    print(f"{'quant':>5} {'loop':>8} {'batch':>5} {'ready s':>8} {'peak GiB':>8} {'prefill ms':>10} {'7-tok ms':>9} "
          f"{'actions/s':>9} {'floor ms':>8} {'bound act/s':>11} {'loop/floor':>10}")
    for quantization in args.quantization:
        if quantization != "none":
            try:
                import bitsandbytes  # noqa: F401 - only whether it is installed
            except ImportError:
                print(f"{quantization:>5}  skipped: bitsandbytes is not installed (pip install bitsandbytes)")
                continue
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(0)
        t0 = time.perf_counter()
        sync = torch.cuda.synchronize
        try:
            model = build_random_model(settings, device, dtype, quantization)
            time_action(model, synthetic_inputs(settings, 1, device, dtype), 1, sync)  # warm-up, as the backend does
        except torch.cuda.OutOfMemoryError:
            print(f"{quantization:>5}  skipped: does not fit in this GPU's memory")
            model = None
            torch.cuda.empty_cache()
            continue
        weights = decoded_weight_bytes(model)
        ready = time.perf_counter() - t0
        for loop_name, decoder in decoders(model, device, args.compile):
            for batch in args.batch_sizes:
                inputs = synthetic_inputs(settings, batch, device, dtype)
                try:
                    if loop_name == "compiled":  # compiling for this batch size is not part of the timing
                        time_action(decoder, inputs, 1, sync)
                    prefill, loop = time_action(decoder, inputs, args.repeats, sync)
                except torch.cuda.OutOfMemoryError:
                    print(f"{quantization:>5} {loop_name:>8} {batch:5d}  out of GPU memory at this batch size")
                    del inputs
                    torch.cuda.empty_cache()
                    break
                peak = torch.cuda.max_memory_allocated(0) / 2**30
                rate = batch / (prefill + loop)
                floor = (ACTION_TOKENS - 1) * step_floor_seconds(weights, gbs) if gbs else None  # the loop's 6 steps
                bound = f"{batch / (floor * ACTION_TOKENS / (ACTION_TOKENS - 1)):11.1f}" if floor else f"{'?':>11}"
                ratio = f"{loop / floor:10.2f}" if floor else f"{'?':>10}"
                floor_ms = "?" if floor is None else f"{floor * 1e3:8.1f}"
                print(f"{quantization:>5} {loop_name:>8} {batch:5d} {ready:8.1f} {peak:8.2f} {prefill * 1e3:10.1f} "
                      f"{loop * 1e3:9.1f} {rate:9.2f} {floor_ms:>8} {bound} {ratio}")
        print(f"{quantization:>5}  weights read per decoded token: {weights / 2**30:.2f} GiB")
        del model, decoder
        torch._dynamo.reset()  # compiled graphs hold the model
    print("floor = the 7-token loop's 6 steps x weight bytes read per step / bandwidth; bound act/s = batch / "
          "(7 x bytes / bandwidth), the prefill counted as one weight read (it is compute-bound, so slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
