"""Magma's any-resolution image processing: normalize, pick the crop grid (at most ``num_crops``
crops of ``base_img_size`` pixels) that keeps the most of the image, resize (bilinear) to that
grid and cut it into crops, row by row."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import ImageSettings


def crop_grids(num_crops: int) -> list[tuple[int, int]]:
    """Candidate grids as (columns, rows), in the order Magma tries them."""
    return [(i, j) for i in range(1, num_crops + 1) for j in range(1, num_crops // i + 1)]


def best_grid(width: int, height: int, settings: ImageSettings) -> tuple[int, int]:
    """(rows, columns) of the grid whose resolution keeps the most image pixels; among equals,
    the one that wastes the least area (first wins on a full tie)."""
    size = settings.base_img_size
    best, kept_best, waste_best = (1, 1), -1, float("inf")
    for cols, rows in crop_grids(settings.num_crops):
        grid_w, grid_h = cols * size, rows * size
        scale = min(grid_w / width, grid_h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        waste = grid_w * grid_h - kept
        if kept > kept_best or (kept == kept_best and waste < waste_best):
            best, kept_best, waste_best = (rows, cols), kept, waste
    return best


def preprocess(image: np.ndarray, settings: ImageSettings) -> tuple[torch.Tensor, tuple[int, int]]:
    """H x W x 3 uint8 RGB (any strides) -> (crops (rows*cols, 3, S, S) float32, (rows, cols)).

    The pixels are those of ``F.interpolate(normalized[None], mode="bilinear")`` as torch computes
    them with its generic bilinear kernel, which it uses for a 3-channel image whenever it runs on
    more than one thread: each channel is resized as its own 1-channel image, which takes that
    kernel at any thread count. (With one thread torch resizes a 3-channel image with another
    kernel, about half as fast, whose floats differ from these in the last bit in about half of
    the values.)"""
    rows, cols = best_grid(image.shape[1], image.shape[0], settings)
    size = settings.base_img_size
    pixels = normalize(image, settings)
    resized = F.interpolate(pixels[:, None], size=(rows * size, cols * size), mode="bilinear")[:, 0]
    if rows == cols == 1:
        return resized[None], (1, 1)
    crops = resized.unfold(1, size, size).unfold(2, size, size)  # (3, rows, cols, S, S)
    crops = crops.permute(1, 2, 0, 3, 4).reshape(rows * cols, 3, size, size)
    return crops, (rows, cols)


def normalize(image: np.ndarray, settings: ImageSettings) -> torch.Tensor:
    """H x W x 3 uint8 -> contiguous 3 x H x W float32 ``(image / 255 - mean) / std``."""
    pixels = channels_first(image).to(torch.float32, memory_format=torch.contiguous_format).div_(255)
    mean = torch.tensor(settings.image_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(settings.image_std, dtype=torch.float32).view(3, 1, 1)
    return pixels.sub_(mean).div_(std)


def channels_first(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 array -> 3 x H x W uint8 tensor on the same memory, or on a copy when torch
    cannot share it (a read-only array, negative strides such as a BGR -> RGB flip)."""
    array = np.asarray(image, dtype=np.uint8)
    if not array.flags.writeable or min(array.strides) < 0:
        array = np.array(array)
    return torch.from_numpy(array).permute(2, 0, 1)
