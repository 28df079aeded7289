"""Patch geometry: a centred grid of square patches, extraction via ``unfold``, foreground shares.

All functions are pure and differentiable where it makes sense (extraction keeps gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PatchGrid:
    """Where the patches of an ``height x width`` image lie: ``rows x cols`` patches of side
    ``patch_size``, ``stride`` apart, the first at ``(top, left)``."""

    height: int
    width: int
    patch_size: int
    stride: int
    rows: int
    cols: int
    top: int
    left: int

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """``(x0, y0, x1, y1)`` of every patch, row-major (the order of :func:`extract_patches`)."""
        p = self.patch_size
        return [(self.left + c * self.stride, self.top + r * self.stride,
                 self.left + c * self.stride + p, self.top + r * self.stride + p)
                for r in range(self.rows) for c in range(self.cols)]


def _count(extent: int, patch_size: int, stride: int) -> int:
    return (extent - patch_size) // stride + 1


def patch_grid(height: int, width: int, patch_size: int, stride: int) -> PatchGrid:
    """The centred grid of patches for an image; raises if the image is smaller than a patch."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if height < patch_size or width < patch_size:
        raise ValueError(f"image {height}x{width} is smaller than one {patch_size}x{patch_size} patch")
    rows, cols = _count(height, patch_size, stride), _count(width, patch_size, stride)
    # Centre the grid so both borders lose the same margin.
    top = (height - patch_size - (rows - 1) * stride) // 2
    left = (width - patch_size - (cols - 1) * stride) // 2
    return PatchGrid(height, width, patch_size, stride, rows, cols, top, left)


def shifted_grid(height: int, width: int, patch_size: int, stride: int, top: int, left: int) -> PatchGrid:
    """The grid of ``stride``-spaced patches whose first patch sits at ``(top, left)`` instead of
    the centred position: as many rows and columns as fit. Offsets in ``[0, stride)`` give every
    phase of the lattice, which is what an objective that must not depend on one patch grid
    averages over (the enhancer draws one per step).

    Example:
        >>> g = shifted_grid(100, 100, 32, 20, 5, 0)
        >>> (g.rows, g.cols, g.top, g.left)
        (4, 4, 5, 0)
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if not (0 <= top <= height - patch_size and 0 <= left <= width - patch_size):
        raise ValueError(f"a {patch_size} px patch at ({top}, {left}) does not fit a {height}x{width} image")
    rows, cols = _count(height - top, patch_size, stride), _count(width - left, patch_size, stride)
    return PatchGrid(height, width, patch_size, stride, rows, cols, top, left)


def choose_stride(height: int, width: int, patch_size: int, target_patches: int = 100) -> int:
    """The stride whose grid holds the number of patches closest to ``target_patches``.

    Ties go to the larger stride (fewer, less overlapping patches). An image exactly one patch
    large gets stride 1 and a single patch.
    """
    if target_patches < 1:
        raise ValueError(f"target_patches must be >= 1, got {target_patches}")
    if height < patch_size or width < patch_size:
        raise ValueError(f"image {height}x{width} is smaller than one {patch_size}x{patch_size} patch")
    span_h, span_w = height - patch_size, width - patch_size
    if span_h == 0 and span_w == 0:
        return 1
    best_stride, best_err = 1, float("inf")
    for s in range(1, max(span_h, span_w) + 2):
        n = _count(height, patch_size, s) * _count(width, patch_size, s)
        if abs(n - target_patches) <= best_err:
            best_stride, best_err = s, abs(n - target_patches)
        if n < target_patches:
            break  # counts only fall as the stride grows
    return best_stride


def _crop_to_grid(images: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    p, s = grid.patch_size, grid.stride
    return images[..., grid.top:grid.top + (grid.rows - 1) * s + p, grid.left:grid.left + (grid.cols - 1) * s + p]


def extract_patches(images: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, N, C, p, p]`` patches in row-major grid order (keeps gradients)."""
    if images.ndim != 4:
        raise ValueError(f"expected [B, C, H, W], got shape {tuple(images.shape)}")
    if tuple(images.shape[-2:]) != (grid.height, grid.width):
        raise ValueError(f"grid is for {grid.height}x{grid.width}, images are {tuple(images.shape[-2:])}")
    b, c = images.shape[:2]
    p = grid.patch_size
    cols = F.unfold(_crop_to_grid(images, grid), kernel_size=p, stride=grid.stride)  # [B, C*p*p, N]
    return cols.transpose(1, 2).reshape(b, grid.count, c, p, p)


def foreground_fraction(mask: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """Share of foreground in each patch: ``[B, 1, H, W]`` (or ``[B, H, W]``) mask -> ``[B, N]``."""
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"expected a [B, 1, H, W] mask, got shape {tuple(mask.shape)}")
    pooled = F.avg_pool2d(_crop_to_grid(mask.float(), grid), kernel_size=grid.patch_size, stride=grid.stride)
    return pooled.flatten(1)


def scores_to_map(scores: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """Spread per-patch scores ``[N]`` over the image: ``[H, W]`` mean of the covering patches,
    NaN where no kept patch lies (scores may hold NaN for dropped patches)."""
    total = torch.zeros(grid.height, grid.width, dtype=torch.float32)
    weight = torch.zeros_like(total)
    for (x0, y0, x1, y1), value in zip(grid.boxes(), scores.detach().float().cpu().tolist()):
        if value == value:  # not NaN
            total[y0:y1, x0:x1] += value
            weight[y0:y1, x0:x1] += 1
    return torch.where(weight > 0, total / weight.clamp(min=1), torch.full_like(total, float("nan")))
