"""Read a Magma checkpoint's ``config.json`` and ``preprocessor_config.json`` into plain settings."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import PolicyConfigError

# ConvNeXt trunks Magma names in vision_config["vision_backbone"]: (depths, dims, LayerNorm eps)
CONVNEXT_VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], float]] = {
    "convnextxxlarge": ((3, 4, 30, 3), (384, 768, 1536, 3072), 1e-5),
    "convnextlarge": ((3, 3, 27, 3), (192, 384, 768, 1536), 1e-6),
}
_PROJECTOR = re.compile(r"mlp(\d+)x_gelu(?:_segtokv\d+)?")
ANYRES_STRATEGIES = ("crop", "global")


@dataclass(frozen=True)
class VisionSettings:
    """What the vision tower and the projector look like."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    norm_eps: float
    mm_hidden_size: int      # channels the projector takes (the trunk's last stage)
    hidden_size: int         # the language model's width
    projector_depth: int     # number of Linear layers (mlp<N>x_gelu)
    anyres_strategy: str     # "crop": each crop through the tower; "global": crops stitched first
    use_im_start_end: bool   # the projector carries img_start/img_end separator parameters


@dataclass(frozen=True)
class MagmaSettings:
    """Everything config.json says about the model."""

    text_config: dict[str, Any]
    vision: VisionSettings
    image_token_index: int

    @property
    def max_positions(self) -> int:
        return int(self.text_config.get("max_position_embeddings", 0))


@dataclass(frozen=True)
class ImageSettings:
    """preprocessor_config.json: crop size, crop budget and normalization."""

    base_img_size: int
    num_crops: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; a missing or broken file is a PolicyConfigError naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyConfigError(f"{path}: {what} is missing") from None
    except (OSError, ValueError) as exc:
        raise PolicyConfigError(f"{path}: cannot read {what}: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyConfigError(f"{path}: {what} must be a JSON object")
    return data


def read_model_settings(directory: Path) -> MagmaSettings:
    """Parse ``directory/config.json`` (model_type ``magma``)."""
    path = Path(directory) / "config.json"
    raw = read_json(path, "the model configuration")
    if raw.get("model_type") != "magma":
        raise PolicyConfigError(f"{path}: model_type must be 'magma', got {raw.get('model_type')!r}")
    text = raw.get("text_config")
    vision = raw.get("vision_config")
    if not isinstance(text, dict) or not isinstance(vision, dict):
        raise PolicyConfigError(f"{path}: needs 'text_config' and 'vision_config' objects")
    text_type = text.get("model_type", "llama")
    if text_type != "llama":
        raise PolicyConfigError(f"{path}: text_config.model_type {text_type!r} is not supported (only 'llama')")
    token = raw.get("image_token_index")
    if not isinstance(token, int) or token < 0:
        raise PolicyConfigError(f"{path}: image_token_index must be a non-negative integer, got {token!r}")
    return MagmaSettings(text_config=dict(text), vision=_vision_settings(path, vision, text), image_token_index=token)


def _vision_settings(path: Path, vision: dict[str, Any], text: dict[str, Any]) -> VisionSettings:
    backbone = str(vision.get("vision_backbone", "convnextxxlarge"))
    if "convnext_depths" in vision or "convnext_dims" in vision:  # explicit sizes (small test models)
        depths = tuple(int(v) for v in vision.get("convnext_depths", ()))
        dims = tuple(int(v) for v in vision.get("convnext_dims", ()))
        eps = float(vision.get("convnext_norm_eps", 1e-6))
        if not depths or len(depths) != len(dims):
            raise PolicyConfigError(f"{path}: vision_config.convnext_depths and convnext_dims "
                                    "must be lists of equal length")
    elif backbone in CONVNEXT_VARIANTS:
        depths, dims, eps = CONVNEXT_VARIANTS[backbone]
    else:
        raise PolicyConfigError(f"{path}: vision_config.vision_backbone {backbone!r} is not supported "
                                f"(supported: {', '.join(CONVNEXT_VARIANTS)})")
    projector = str(vision.get("mm_projector_type", "linear"))
    match = _PROJECTOR.fullmatch(projector)
    if not match or int(match.group(1)) < 1:
        raise PolicyConfigError(f"{path}: vision_config.mm_projector_type {projector!r} is not supported "
                                "(expected mlp<N>x_gelu or mlp<N>x_gelu_segtokv<M>)")
    strategy = str(vision.get("img_anyres_strategy", "crop"))
    if strategy not in ANYRES_STRATEGIES:
        raise PolicyConfigError(f"{path}: vision_config.img_anyres_strategy must be one of "
                                f"{', '.join(ANYRES_STRATEGIES)}, got {strategy!r}")
    layer = vision.get("vision_feature_layer", "clip_vis_dense")
    if layer != "clip_vis_dense":
        raise PolicyConfigError(f"{path}: vision_config.vision_feature_layer {layer!r} is not supported "
                                "(Magma uses 'clip_vis_dense', the trunk's last stage)")
    return VisionSettings(
        depths=depths, dims=dims, norm_eps=eps,
        mm_hidden_size=int(vision.get("mm_hidden_size", dims[-1])),
        hidden_size=int(vision.get("hidden_size", text.get("hidden_size", 0))),
        projector_depth=int(match.group(1)), anyres_strategy=strategy,
        use_im_start_end=bool(vision.get("mm_use_im_start_end", False)),
    )


def read_image_settings(directory: Path) -> ImageSettings:
    """Parse ``directory/preprocessor_config.json`` (Magma's image processor settings)."""
    path = Path(directory) / "preprocessor_config.json"
    raw = read_json(path, "the image processor configuration")
    try:
        size, crops = int(raw.get("base_img_size", 768)), int(raw.get("num_crops", 1))
        mean = tuple(float(v) for v in raw.get("image_mean", (0.48145466, 0.4578275, 0.40821073)))
        std = tuple(float(v) for v in raw.get("image_std", (0.26862954, 0.26130258, 0.27577711)))
    except (TypeError, ValueError) as exc:
        raise PolicyConfigError(f"{path}: {exc}") from None
    strategy = raw.get("anyres_strategy", "crop")
    if size < 32 or crops < 1 or len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise PolicyConfigError(f"{path}: expected base_img_size >= 32, num_crops >= 1 and 3 image_mean/image_std "
                                f"values (std > 0), got {size}, {crops}, {list(mean)}, {list(std)}")
    if strategy not in ANYRES_STRATEGIES:
        raise PolicyConfigError(f"{path}: anyres_strategy must be one of {', '.join(ANYRES_STRATEGIES)}, "
                                f"got {strategy!r}")
    return ImageSettings(base_img_size=size, num_crops=crops, image_mean=mean, image_std=std)  # type: ignore[arg-type]
