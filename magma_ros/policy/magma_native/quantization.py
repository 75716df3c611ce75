"""bitsandbytes 8-bit (``int8``) and 4-bit NF4 (``nf4``) weights for the native Magma, applied
while the checkpoint streams in: ``Quantizer.prepare`` swaps the chosen ``nn.Linear`` layers of
the model (still on the meta device, so no memory) for empty bitsandbytes layers, and
``Quantizer.assign`` quantizes each weight as it arrives. Peak memory is the quantized model plus
about one full-precision tensor; the full-precision language model never exists.

Quantized: every Linear of the language model's decoder layers (attention and MLP); the
embeddings, the output layer (``lm_head``) and the norms stay in ``dtype``, as transformers'
bitsandbytes integration does. ``quantize_vision`` adds the vision tower's and projector's Linears.
bitsandbytes is imported here only, when a quantization is asked for.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ...errors import one_line
from ..base import PolicyConfigError

QUANTIZED_PREFIXES = ("language_model.model.layers.",)
VISION_PREFIXES = ("vision_tower.", "multi_modal_projector.")
NF4_BLOCKSIZE = 64
NF4_CHUNK = 1 << 20  # values quantized per bitsandbytes call (a multiple of NF4_BLOCKSIZE)
INSTALL_HINT = "pip install 'magma_ros[quantization]' (bitsandbytes), or set quantization: none"


class Quantizer:
    """Replaces and fills the quantized Linear layers of one model load."""

    def __init__(self, method: str, device: str, compute_dtype: torch.dtype, include_vision: bool = False) -> None:
        if method not in ("int8", "nf4"):
            raise PolicyConfigError(f"quantization: must be none, int8 or nf4, got {method!r}")
        self.bnb = import_bitsandbytes()
        # bitsandbytes logs on every int8 call that bfloat16 inputs go through float16: expected, not news
        logger = logging.getLogger("bitsandbytes.autograd._functions")
        if not any(isinstance(f, _Int8CastNotice) for f in logger.filters):
            logger.addFilter(_Int8CastNotice())
        self.method = method
        self.device = device
        self.compute_dtype = compute_dtype
        self.prefixes = QUANTIZED_PREFIXES + (VISION_PREFIXES if include_vision else ())
        self.layers: dict[str, nn.Module] = {}  # "<module name>.weight" -> its bitsandbytes layer

    def prepare(self, model: nn.Module) -> None:
        """Swap the selected ``nn.Linear`` modules of ``model`` (on the meta device) for empty
        bitsandbytes layers of the same shape."""
        for name, module in list(model.named_modules()):
            if type(module) is nn.Linear and name.startswith(self.prefixes) and self._fits(module):
                owner, _, leaf = name.rpartition(".")
                with torch.device("meta"):
                    layer = self._layer(module.in_features, module.out_features, module.bias is not None)
                setattr(model.get_submodule(owner), leaf, layer)
                self.layers[f"{name}.weight"] = layer

    def assign(self, name: str, tensor: torch.Tensor) -> bool:
        """Quantize ``tensor`` (a full-precision weight read from the checkpoint) into the layer
        whose weight ``name`` is; False when ``name`` is not a quantized weight."""
        layer = self.layers.get(name)
        if layer is None:
            return False
        if self.method == "nf4":
            packed, state = self.nf4(tensor)
            layer.weight = self.bnb.nn.Params4bit(packed, requires_grad=False, quant_state=state,
                                                  blocksize=NF4_BLOCKSIZE, compress_statistics=True, quant_type="nf4",
                                                  module=layer, bnb_quantized=True)
            layer.quant_state = state
        else:
            layer.weight = self.int8(tensor)
        return True

    def int8(self, tensor: torch.Tensor) -> Any:
        """Row-wise int8 weights and scales, as ``Int8Params`` computes them when moved off the CPU;
        done here explicitly because ``Int8Params.to`` quantizes only tensors that start on the CPU."""
        weight = tensor.to(device=self.device, dtype=self.compute_dtype).to(torch.float16).contiguous()
        rows, scales, _ = self.bnb.functional.int8_vectorwise_quant(weight)
        del weight
        param = self.bnb.nn.Int8Params(rows, requires_grad=False, has_fp16_weights=False)
        param.CB, param.SCB = rows, scales
        return param

    def nf4(self, tensor: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """NF4 with double quantization, as ``bitsandbytes.functional.quantize_4bit`` computes it,
        but over slices of ``NF4_CHUNK`` values: bitsandbytes' CPU path makes temporaries many times
        a slice's size, which on a whole 8B-model matrix would outgrow the matrix itself. Slices
        are whole 64-value blocks, so the packed values and scales are the same."""
        functional = self.bnb.functional
        flat = tensor.reshape(-1)
        packed, scales = [], []
        for start in range(0, flat.numel(), NF4_CHUNK):
            part = flat[start:start + NF4_CHUNK].to(device=self.device, dtype=self.compute_dtype)
            out, absmax = torch.ops.bitsandbytes.quantize_4bit.default(part, NF4_BLOCKSIZE, "nf4", torch.uint8)
            packed.append(out)
            scales.append(absmax)
            del part
        absmax = torch.cat(scales)
        offset = absmax.mean()
        nested, nested_state = functional.quantize_blockwise(absmax - offset, blocksize=256)
        code = functional.get_4bit_type("nf4", device=absmax.device)
        state = functional.QuantState(absmax=nested, shape=tensor.shape, dtype=self.compute_dtype,
                                      blocksize=NF4_BLOCKSIZE, code=code, quant_type="nf4", offset=offset,
                                      state2=nested_state)
        return torch.cat(packed), state

    def check_device(self) -> None:
        """One small quantized layer run on the device: a bitsandbytes build that cannot serve it
        fails here, before the checkpoint is read, with the fix in one line."""
        try:
            with torch.device("meta"):
                layer = self._layer(NF4_BLOCKSIZE, NF4_BLOCKSIZE, False)
            self.layers["probe"] = layer
            self.assign("probe", torch.eye(NF4_BLOCKSIZE))
            x = torch.ones(1, NF4_BLOCKSIZE, dtype=self.compute_dtype, device=self.device)
            with torch.inference_mode():
                out = layer(x)
            if not bool(torch.isfinite(out).all()):
                raise RuntimeError("non-finite output")
        except PolicyConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - bitsandbytes raises many types for a device it was not built for
            raise PolicyConfigError(f"quantization: {self.method}: bitsandbytes {self.bnb.__version__} cannot run on "
                                    f"{self.device}: {type(exc).__name__}: {one_line(exc)} (install a bitsandbytes "
                                    f"build for this device, or set quantization: none)") from None
        finally:
            self.layers.pop("probe", None)

    def _fits(self, module: nn.Linear) -> bool:
        """NF4 rows must be whole 64-value blocks (every Llama and ConvNeXt-XXLarge layer is)."""
        return self.method != "nf4" or module.in_features % NF4_BLOCKSIZE == 0

    def _layer(self, fan_in: int, fan_out: int, bias: bool) -> nn.Module:
        if self.method == "nf4":
            return self.bnb.nn.Linear4bit(fan_in, fan_out, bias=bias, compute_dtype=self.compute_dtype,
                                          compress_statistics=True, quant_type="nf4")
        return _int8_any_rank(self.bnb)(fan_in, fan_out, bias=bias, has_fp16_weights=False, threshold=0.0)


class _Int8CastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def _int8_any_rank(bnb: Any) -> type:
    """bitsandbytes' int8 Linear for inputs of any rank (it takes 2-D and 3-D; the ConvNeXt MLPs get 4-D)."""
    global _INT8_ANY_RANK
    if _INT8_ANY_RANK is None:
        class Linear8bitAnyRank(bnb.nn.Linear8bitLt):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return super().forward(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

        _INT8_ANY_RANK = Linear8bitAnyRank
    return _INT8_ANY_RANK


_INT8_ANY_RANK: type | None = None


def import_bitsandbytes() -> Any:
    """The bitsandbytes module, or a one-line PolicyConfigError naming the extra to install."""
    try:
        import bitsandbytes
    except ImportError as exc:
        raise PolicyConfigError(f"quantization needs bitsandbytes ({exc.name or 'bitsandbytes'} is missing or "
                                f"broken): {INSTALL_HINT}") from None
    return bitsandbytes


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The bitsandbytes Linear layers of ``model`` by name."""
    return {name: m for name, m in model.named_modules() if is_quantized(m)}


def layer_bytes(layer: nn.Module) -> int:
    """Bytes one layer holds: its weight (packed if quantized), bias and quantization state
    (scales, nested scales, code tables); tensors shared between layers count in each."""
    tensors: list[torch.Tensor] = [p for p in layer.parameters(recurse=False)]
    weight = getattr(layer, "weight", None)
    int8_state = getattr(layer, "state", None)  # Linear8bitLt moves CB/SCB here on its first forward
    candidates = [getattr(weight, "SCB", None), getattr(int8_state, "SCB", None), getattr(int8_state, "CB", None)]
    state = getattr(weight, "quant_state", None)
    while state is not None:
        candidates += [state.absmax, state.code, getattr(state, "offset", None)]
        state = getattr(state, "state2", None)
    candidates.append(getattr(weight, "CB", None))
    tensors += [t for t in candidates if isinstance(t, torch.Tensor)]
    seen, total = set(), 0
    for t in tensors:
        key = (t.data_ptr(), t.nbytes)
        if key not in seen:
            seen.add(key)
            total += t.nbytes
    return total


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` is a bitsandbytes 4-bit or 8-bit Linear (or a subclass)."""
    return any(cls.__module__.startswith("bitsandbytes.") and cls.__name__ in ("Linear4bit", "Linear8bitLt")
               for cls in type(module).__mro__)
