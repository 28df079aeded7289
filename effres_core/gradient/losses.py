"""Losses and differentiable objectives built on the scorer.

* :func:`mape_loss`: the paper's training loss, mean absolute percentage error.
* :func:`sharpness_score`: per-image mean of the raw patch scores, differentiable with respect to the
  images, with memory bounded by ``chunk_size`` (the gradient is computed patch chunk by patch chunk
  inside the forward pass, so no autograd graph over all patches is ever held). The enhancer, the
  diffusion guidance and :class:`SharpnessLoss` all optimise this one quantity.
* :class:`SharpnessLoss`: ``1 - sharpness`` of a batch, for fine-tuning generators or restorers
  against a frozen scorer.

Why the *mean of unclipped* scores for optimisation: the median moves only through one patch and
clipping to [0, 1] zeroes the gradient of saturated patches; the mean of raw scores gives every
kept patch a say. ``clip="soft"`` bounds the reward smoothly when pushing past 1 is not wanted.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..model.net import scoring_net
from ..measure.scoring import check_images, patch_plan

CLIP_MODES = ("none", "soft")


def mape_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean absolute percentage error ``mean(|pred - y| / y)``, the paper's training loss.

    Args:
        pred: predicted ratios, any shape.
        target: true ratios in (0, 1], same shape (broadcastable).
        eps: floor on the denominator, so a (invalid) zero label cannot make the loss infinite.

    Example:
        >>> mape_loss(torch.tensor([0.5, 1.0]), torch.tensor([0.25, 1.0]))
        tensor(0.5000)
    """
    if pred.shape != target.shape:
        target = target.expand_as(pred)
    return ((pred - target).abs() / target.abs().clamp(min=eps)).mean()


def soft_clip(x: torch.Tensor, sharpness: float = 10.0) -> torch.Tensor:
    """A smooth stand-in for ``x.clamp(0, 1)``: equal to it far from the bounds, never flat inside.

    ``sharpness`` sets how tightly the curve hugs the bounds (larger: closer to a hard clamp).
    """
    lower = F.softplus(x * sharpness) / sharpness  # smooth max(x, 0)
    return 1.0 - F.softplus((1.0 - lower) * sharpness) / sharpness  # smooth min(., 1)


def _transform(scores: torch.Tensor, clip: str) -> torch.Tensor:
    return soft_clip(scores) if clip == "soft" else scores


def _patch_plan(net: nn.Module, images: torch.Tensor, mask: torch.Tensor | None, n_patches: int,
                min_foreground: float):
    """Patch boxes ``[(x0, y0, x1, y1)]`` and the ``[B, N]`` keep matrix (on the CPU) for a batch."""
    p = int(getattr(net, "patch_size", 0) or images.shape[-1])
    h, w = images.shape[-2:]
    if h < p or w < p:
        raise ValueError(f"images {h}x{w} are smaller than the scorer's {p}x{p} patch; upscale them first")
    grid, keep = patch_plan(net, images, mask, n_patches=n_patches, min_foreground=min_foreground)
    return grid.boxes(), keep.cpu()  # read element by element below: no device sync per patch


@contextmanager
def eval_mode(net: nn.Module):
    """Run ``net`` in eval mode for a while and restore its mode after: BatchNorm must use its
    running statistics when scoring, or each batch would score against its own mix."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


class _ChunkedPatchMean(torch.autograd.Function):
    """Per-image mean of ``transform(net(patch))`` over kept patches, ``[B]`` (NaN: nothing kept).

    The input gradient is computed in the forward pass, one chunk of patches at a time, and kept
    for backward: peak memory is one chunk's activations plus one image-sized buffer, whatever
    the image size. The scorer's own parameters get no gradient (it is meant to be frozen).
    """

    @staticmethod
    def forward(ctx, images, net, boxes, keep, chunk_size, clip, need_grad, scale):
        b = images.shape[0]
        items = [(i, j) for i in range(b) for j in range(len(boxes)) if keep[i, j]]
        counts = keep.sum(dim=1).to(images.device, images.dtype)
        totals = torch.zeros(b, dtype=images.dtype, device=images.device)
        grad = torch.zeros_like(images) if need_grad else None
        src = images.detach()
        for start in range(0, len(items), chunk_size):
            chunk = items[start:start + chunk_size]
            owner = torch.tensor([i for i, _ in chunk], device=images.device)
            patches = torch.stack([src[i, :, boxes[j][1]:boxes[j][3], boxes[j][0]:boxes[j][2]] for i, j in chunk])
            with torch.enable_grad():
                patches.requires_grad_(need_grad)
                values = _transform(net(patches).to(images.dtype) * scale, clip)
                if need_grad:
                    # d(mean_i)/d(patch) = d(value)/d(patch) / count_i: weight before one backward.
                    g, = torch.autograd.grad((values / counts[owner]).sum(), patches)
            totals.index_add_(0, owner, values.detach())
            if need_grad:
                g = torch.nan_to_num(g.to(images.dtype))
                for k, (i, j) in enumerate(chunk):
                    x0, y0, x1, y1 = boxes[j]
                    grad[i, :, y0:y1, x0:x1] += g[k]
        ctx.save_for_backward(grad if need_grad else torch.empty(0))
        return torch.where(counts > 0, totals / counts.clamp(min=1), torch.full_like(totals, float("nan")))

    @staticmethod
    def backward(ctx, grad_out):
        grad, = ctx.saved_tensors
        if grad.numel() == 0:
            return (None,) * 8
        grad_out = torch.nan_to_num(grad_out).view(-1, *([1] * (grad.ndim - 1)))
        return grad * grad_out.to(grad.dtype), None, None, None, None, None, None, None


def sharpness_score(net: nn.Module, images: torch.Tensor, mask: torch.Tensor | None = None, *,
                    n_patches: int = 100, min_foreground: float = 0.9, chunk_size: int = 16,
                    clip: str = "none") -> torch.Tensor:
    """Mean raw patch score per image ``[B]``: the objective the gradient tools raise or lower.

    Differentiable with respect to ``images`` (once; no double backward), memory bounded by
    ``chunk_size`` patches. Patches are the scorer's grid of about ``n_patches``; with a ``mask``
    only patches with at least ``min_foreground`` foreground count. Images with no kept patch give
    NaN (and a zero gradient).

    Args:
        net: a patch regressor (:class:`~effres_core.model.net.EffResNet`), ideally in eval mode.
        images: ``[B, 3, H, W]`` float RGB in [0, 1], at least one patch large.
        mask: optional foreground ``[B, H, W]`` or ``[B, 1, H, W]`` in [0, 1].
        clip: ``"none"`` (raw scores) or ``"soft"`` (:func:`soft_clip` per patch).

    Example:
        >>> from effres_core.model.net import EffResNet
        >>> net = EffResNet(patch_size=32, width=0.25).eval()
        >>> x = torch.rand(2, 3, 64, 64, requires_grad=True)
        >>> sharpness_score(net, x).sum().backward()
        >>> x.grad.shape
        torch.Size([2, 3, 64, 64])
    """
    check_images(images)
    if clip not in CLIP_MODES:
        raise ValueError(f"clip must be one of {CLIP_MODES}, got {clip!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    boxes, keep = _patch_plan(net, images, mask, n_patches, min_foreground)
    need_grad = torch.is_grad_enabled() and images.requires_grad
    return _ChunkedPatchMean.apply(images, net, boxes, keep, chunk_size, clip, need_grad, 1.0)


def sharpness_of_patches(net: nn.Module, images: torch.Tensor, boxes: list[tuple[int, int, int, int]], *,
                         chunk_size: int = 16, clip: str = "none", scale: float = 1.0) -> torch.Tensor:
    """Mean patch score per image ``[B]`` over the given patch ``boxes`` ``(x0, y0, x1, y1)`` (the same
    for every image; each the net's patch size): :func:`sharpness_score` for patches chosen by
    the caller, e.g. the face crops' grids the scorer uses, shifted (the enhancer). NaN when
    ``boxes`` is empty. Differentiable like :func:`sharpness_score`, memory bounded the same way.
    Each patch score is multiplied by ``scale`` before ``clip``: the scorer's ``k`` for a face it
    upscaled by ``k`` (its score relative to the face's own pixels).

    Example:
        >>> from effres_core.model.net import EffResNet
        >>> net = EffResNet(patch_size=32, width=0.25).eval()
        >>> sharpness_of_patches(net, torch.rand(1, 3, 64, 64), [(0, 0, 32, 32), (16, 8, 48, 40)]).shape
        torch.Size([1])
    """
    check_images(images)
    if clip not in CLIP_MODES:
        raise ValueError(f"clip must be one of {CLIP_MODES}, got {clip!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    h, w = images.shape[-2:]
    for x0, y0, x1, y1 in boxes:
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"patch box {(x0, y0, x1, y1)} is outside the {h}x{w} images")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    keep = torch.ones(images.shape[0], len(boxes), dtype=torch.bool)
    need_grad = torch.is_grad_enabled() and images.requires_grad
    return _ChunkedPatchMean.apply(images, net, list(boxes), keep, chunk_size, clip, need_grad, float(scale))


class SharpnessLoss(nn.Module):
    """``1 - mean sharpness`` of a batch of face images: lower loss = sharper-looking faces.

    The scorer is frozen: put in eval mode (BatchNorm uses its running statistics) and its
    parameters stop requiring gradients, so only the images (and whatever made them) learn.
    The per-image score is the mean of the raw patch scores (:func:`sharpness_score`); images
    with no usable patch are left out of the batch mean.

    Args:
        model: an :class:`~effres_core.measure.scorer.EffRes` or a bare :class:`~effres_core.model.net.EffResNet`.
        n_patches: about how many patches per image (fewer: faster, noisier).
        min_foreground: share of foreground a patch needs when a mask is given.
        clip: ``"soft"`` (default) bounds each patch's reward near [0, 1], so the loss stops
            pushing once a face reads as fully sharp; ``"none"`` uses raw scores.
        chunk_size: patches per scorer pass; bounds memory.

    Shape:
        images ``[B, 3, H, W]`` float in [0, 1] (a generator's output); optional mask ``[B, H, W]``;
        output a scalar.

    Example:
        >>> from effres_core.model.net import EffResNet
        >>> loss_fn = SharpnessLoss(EffResNet(patch_size=32, width=0.25))
        >>> generator = torch.nn.Conv2d(3, 3, 3, padding=1)
        >>> loss = loss_fn(generator(torch.rand(2, 3, 64, 64)).sigmoid())
        >>> loss.backward()                      # gradients reach the generator only
        >>> generator.weight.grad is not None
        True
    """

    def __init__(self, model: nn.Module, n_patches: int = 25, min_foreground: float = 0.9, clip: str = "soft",
                 chunk_size: int = 16):
        super().__init__()
        net = scoring_net(model)
        if not isinstance(net, nn.Module):
            raise TypeError(f"expected an EffRes or EffResNet, got {type(model).__name__}")
        if clip not in CLIP_MODES:
            raise ValueError(f"clip must be one of {CLIP_MODES}, got {clip!r}")
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.n_patches, self.min_foreground, self.clip, self.chunk_size = n_patches, min_foreground, clip, chunk_size

    def train(self, mode: bool = True) -> "SharpnessLoss":
        super().train(mode)
        self.net.eval()  # the scorer stays frozen even when the surrounding model trains
        return self

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        scores = sharpness_score(self.net, images, mask, n_patches=self.n_patches,
                                 min_foreground=self.min_foreground, chunk_size=self.chunk_size, clip=self.clip)
        valid = ~torch.isnan(scores)
        if not bool(valid.any()):
            return images.sum() * 0.0  # nothing to score: a zero loss that still sits in the graph
        return 1.0 - scores[valid].mean()
