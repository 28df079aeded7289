"""The differentiable scoring path: image batch (+ optional mask) -> per-image ratio.

This is the paper's inference on tensors: a grid of about ``n_patches`` patches, patches with
less than ``min_foreground`` foreground dropped, each patch scored, clipped to [0, 1] and the
median taken. Everything stays in torch so gradients reach the pixels (enhancer, guidance).
"""

from __future__ import annotations

import torch
from torch import nn

from .patches import PatchGrid, choose_stride, extract_patches, foreground_fraction, patch_grid

REDUCTIONS = ("median", "mean")


def patch_plan(net: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None, *,
               n_patches: int = 100, min_foreground: float = 0.9,
               grid: PatchGrid | None = None) -> tuple[PatchGrid, torch.Tensor]:
    """The patch grid for ``images`` (about ``n_patches`` patches of the net's size, unless ``grid``
    is given) and which patches to score: ``[B, N]`` bool, those with at least ``min_foreground``
    of ``mask`` (all when there is no mask), on the images' device."""
    p = int(getattr(net, "patch_size", 0) or images.shape[-1])
    h, w = images.shape[-2:]
    if grid is None:
        grid = patch_grid(h, w, p, choose_stride(h, w, p, n_patches))
    if mask is None:
        return grid, torch.ones(images.shape[0], grid.count, dtype=torch.bool, device=images.device)
    if mask.shape[0] != images.shape[0] or tuple(mask.shape[-2:]) != (h, w):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match images {tuple(images.shape)}")
    return grid, foreground_fraction(mask.detach().to(images.device), grid) >= min_foreground


def patch_scores(net: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None, *,
                 n_patches: int = 100, min_foreground: float = 0.9, chunk_size: int = 64,
                 grid: PatchGrid | None = None) -> tuple[torch.Tensor, PatchGrid]:
    """Raw per-patch scores ``[B, N]`` (NaN where a patch has too little foreground) and the grid.

    Args:
        net: a patch regressor (:class:`~effres_core.model.net.EffResNet`) taking ``[n, 3, p, p]`` in [0, 1].
        images: ``[B, 3, H, W]`` float RGB in [0, 1].
        mask: optional foreground mask ``[B, 1, H, W]`` or ``[B, H, W]`` in [0, 1].
        n_patches: about how many patches the grid holds (the paper's 100).
        min_foreground: share of foreground a patch needs to be kept (the paper's 0.9).
        chunk_size: patches per forward pass, which bounds memory on large images.
        grid: a fixed grid instead of one chosen from ``n_patches``.
    """
    check_images(images)
    grid, keep = patch_plan(net, images, mask, n_patches=n_patches, min_foreground=min_foreground, grid=grid)
    p = grid.patch_size
    patches = extract_patches(images, grid)  # [B, N, 3, p, p]
    b, n = patches.shape[:2]
    flat = patches.reshape(b * n, 3, p, p)
    keep = keep.flatten()
    scores = torch.full((b * n,), float("nan"), dtype=images.dtype, device=images.device)
    idx = keep.nonzero().flatten()
    if idx.numel():
        outs = [net(flat[idx[i:i + chunk_size]]).to(images.dtype) for i in range(0, idx.numel(), chunk_size)]
        scores = scores.index_put((idx,), torch.cat(outs))
    return scores.view(b, n), grid


def reduce_scores(scores: torch.Tensor, reduce: str = "median", clip: bool = True) -> torch.Tensor:
    """``[B, N]`` patch scores (NaN = dropped) -> ``[B]`` image scores; NaN where nothing was kept."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if clip:
        scores = scores.clamp(0.0, 1.0)  # clamp keeps NaN as NaN
    if reduce == "median":
        return torch.nanmedian(scores, dim=1).values
    return torch.nanmean(scores, dim=1)


def effective_resolution_ratio(net: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None, *,
                               n_patches: int = 100, min_foreground: float = 0.9, reduce: str = "median",
                               clip: bool = True, chunk_size: int = 64) -> torch.Tensor:
    """Per-image effective resolution ratio ``[B]``, differentiable with respect to ``images``.

    ``reduce="median"`` is the paper's estimate; ``"mean"`` spreads the gradient over all patches,
    which suits optimisation (enhancer, guidance). Images with no usable patch give NaN.

    Example:
        >>> from effres_core.model.net import EffResNet
        >>> net = EffResNet(patch_size=32, width=0.25).eval()
        >>> effective_resolution_ratio(net, torch.rand(2, 3, 64, 64)).shape
        torch.Size([2])
    """
    scores, _ = patch_scores(net, images, mask, n_patches=n_patches, min_foreground=min_foreground,
                             chunk_size=chunk_size)
    return reduce_scores(scores, reduce, clip)


class EffectiveResolutionRatio(nn.Module):
    """Module form of :func:`effective_resolution_ratio` with the settings stored."""

    def __init__(self, net: nn.Module, n_patches: int = 100, min_foreground: float = 0.9,
                 reduce: str = "median", clip: bool = True):
        super().__init__()
        self.net = net
        self.n_patches, self.min_foreground, self.reduce, self.clip = n_patches, min_foreground, reduce, clip

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return effective_resolution_ratio(self.net, images, mask, n_patches=self.n_patches,
                                          min_foreground=self.min_foreground, reduce=self.reduce, clip=self.clip)


def check_images(images: torch.Tensor) -> None:
    """Raise a clear error unless ``images`` is a float ``[B, 3, H, W]`` tensor."""
    if not torch.is_tensor(images):
        raise TypeError(f"expected a tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected [B, 3, H, W] RGB images, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"expected float images in [0, 1], got dtype {images.dtype}")
