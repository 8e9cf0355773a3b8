"""Regional max-pooling of multi-stage feature maps into a fixed grid of region vectors.

Each stage map is max-pooled over a grid x grid layout of equal, evenly spaced cells that
tile the map and overlap where it does not divide evenly (a 14-wide map in 3 cells: columns
0-5, 4-9, 8-13), so maps of different resolution give the same regions. It is one
`max_pool2d` with a kernel and stride chosen per map size: unlike adaptive pooling this
exports to ONNX for any size and runs as a single fast kernel there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cell_window(size: int, grid: int) -> tuple[int, int]:
    """(kernel, stride) of `grid` equal cells tiling an axis of `size` (size >= grid)."""
    stride = size // grid
    return size - (grid - 1) * stride, stride


def grid_bins(size: int, grid: int) -> list[tuple[int, int]]:
    """[start, end) of each of `grid` cells along an axis of `size`."""
    if size < grid:  # fewer pixels than cells: each cell is the pixel it falls on
        return [(i * size // grid, i * size // grid + 1) for i in range(grid)]
    kernel, stride = cell_window(size, grid)
    return [(i * stride, i * stride + kernel) for i in range(grid)]


def regional_max_pool(feature_map: torch.Tensor, grid: int = 3) -> torch.Tensor:
    """[N, C, H, W] -> [N, grid*grid, C]: the max of each cell, cells in row-major order."""
    if feature_map.dim() != 4:
        raise ValueError(f"expected a [N, C, H, W] map, got shape {tuple(feature_map.shape)}")
    height, width = (int(s) for s in feature_map.shape[-2:])
    if height < grid or width < grid:
        cells = [
            feature_map[:, :, top:bottom, left:right].amax(dim=(2, 3))
            for top, bottom in grid_bins(height, grid)
            for left, right in grid_bins(width, grid)
        ]
        return torch.stack(cells, dim=1)
    (kernel_h, stride_h), (kernel_w, stride_w) = cell_window(height, grid), cell_window(width, grid)
    pooled = F.max_pool2d(feature_map, (kernel_h, kernel_w), (stride_h, stride_w))
    return pooled.flatten(2).transpose(1, 2)


def regional_pool(stage_maps: list[torch.Tensor], grid: int = 3) -> torch.Tensor:
    """Stage maps -> [N, grid*grid, sum(C)]: per-stage L2, concatenated, L2 again.

    Per-stage normalisation gives every stage the same weight whatever its width or scale.
    """
    if not stage_maps:
        raise ValueError("regional_pool needs at least one stage map")
    regions = [F.normalize(regional_max_pool(m, grid), dim=-1) for m in stage_maps]
    return F.normalize(torch.cat(regions, dim=-1), dim=-1)
