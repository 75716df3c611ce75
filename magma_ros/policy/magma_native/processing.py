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
    """H x W x 3 uint8 RGB -> (crops (rows*cols, 3, S, S) float32, (rows, cols))."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(settings.image_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(settings.image_std, dtype=torch.float32).view(3, 1, 1)
    pixels = (pixels - mean) / std
    rows, cols = best_grid(image.shape[1], image.shape[0], settings)
    size = settings.base_img_size
    resized = F.interpolate(pixels[None], size=(rows * size, cols * size), mode="bilinear")
    crops = resized.unfold(2, size, size).unfold(3, size, size)  # (1, 3, rows, cols, S, S)
    crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(rows * cols, 3, size, size)
    return crops, (rows, cols)
