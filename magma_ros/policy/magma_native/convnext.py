"""The ConvNeXt trunk Magma's vision tower runs (stem + stages; no pooling head), written with
the parameter names the checkpoint uses under ``vision_tower.clip_vision_model.trunk``:
``stem.{0,1}``, ``stages.<i>.downsample.{0,1}``, ``stages.<i>.blocks.<j>.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvMlp(nn.Module):
    """Pointwise MLP (channels last): Linear, exact GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, LayerNorm, MLP, per-channel LayerScale ``gamma``, residual."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = ConvMlp(dim, 4 * dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.mlp(self.norm(y)) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtStage(nn.Module):
    """Optional 2x downsampling (LayerNorm + 2x2 stride-2 conv), then ``depth`` blocks."""

    def __init__(self, in_dim: int, dim: int, depth: int, eps: float, downsample: bool) -> None:
        super().__init__()
        self.downsample = (nn.Sequential(ChannelsFirstLayerNorm(in_dim, eps=eps), nn.Conv2d(in_dim, dim, 2, stride=2))
                           if downsample else nn.Identity())
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim, eps) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXtTrunk(nn.Module):
    """4x4 stride-4 patch stem, then the stages; output stride 32, ``dims[-1]`` channels."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...], eps: float) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4),
                                  ChannelsFirstLayerNorm(dims[0], eps=eps))
        self.stages = nn.Sequential(*(
            ConvNeXtStage(dims[max(i - 1, 0)], dims[i], depths[i], eps, downsample=i > 0) for i in range(len(depths))
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class ClipVisual(nn.Module):
    """Holder that gives the trunk its checkpoint prefix (``clip_vision_model.trunk``)."""

    def __init__(self, trunk: ConvNeXtTrunk) -> None:
        super().__init__()
        self.trunk = trunk


class MagmaVisionTower(nn.Module):
    """Images (N, 3, H, W), normalized -> dense features (N, C, H/32, W/32)."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...], eps: float) -> None:
        super().__init__()
        self.clip_vision_model = ClipVisual(ConvNeXtTrunk(depths, dims, eps))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip_vision_model.trunk(pixels)
