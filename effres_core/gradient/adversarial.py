"""L2 projected gradient ascent on images: the adversarial augmentation of training and the
engine of the enhancer.

Step sizes are in the paper's units: pixel values in [0, ``pixel_range``] (255), each step the
gradient normalised to L2 length ``step_size`` per image; after each step the total change is
clipped to the L-infinity ball of radius ``linf`` (same units) and the image to the valid range.
"""

from __future__ import annotations

from typing import Callable

import torch


def _per_image_l2(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (x.ndim - 1)))


def l2_pgd(objective: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, steps: int = 10,
           step_size: float = 30.0, linf: float | None = 10.0, pixel_range: float = 255.0,
           mask: torch.Tensor | None = None, lower: float = 0.0, upper: float = 1.0,
           grad_transform: Callable[[torch.Tensor], torch.Tensor] | None = None, random_init: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Maximise ``objective(x).sum()`` by L2-normalised gradient ascent, starting at ``images``.

    Args:
        objective: maps ``[B, ...]`` images (in [``lower``, ``upper``]) to per-image values ``[B]``
            (or a scalar) to be *raised*; negate it to lower something.
        images: ``[B, C, H, W]`` float in [``lower``, ``upper``]; not modified.
        steps: number of ascent steps (0 returns a copy).
        step_size: L2 length of each step, in units of ``pixel_range`` (30 = the paper's training value).
        linf: L-infinity radius of the total change in the same units, or ``None`` for no bound.
        pixel_range: how many units span [``lower``, ``upper``] (255: the paper's pixel scale).
        mask: optional ``[B, 1, H, W]`` or ``[B, H, W]`` weights in [0, 1]; only masked pixels move.
        grad_transform: optional map applied to each step's gradient before the mask and the L2
            normalisation (the enhancer filters it there: smoothing, high-pass, brightness only).
        random_init: start at a uniformly random point of the L-infinity ball (needs ``linf``)
            instead of at ``images`` (the paper: no random start).
        generator: random generator for ``random_init``.
    Returns:
        The perturbed images, detached, same dtype and shape.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if images.ndim != 4:
        raise ValueError(f"expected [B, C, H, W] images, got shape {tuple(images.shape)}")
    scale = (upper - lower) / pixel_range  # one pixel unit in image units
    if mask is not None:
        mask = (mask.unsqueeze(1) if mask.ndim == 3 else mask).to(images.device, images.dtype)
    origin = images.detach()
    x = origin.clone()
    if random_init:
        if linf is None:
            raise ValueError("random_init needs an L-infinity radius (linf)")
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        if mask is not None:
            noise = noise * mask
        x = (x + noise * linf * scale).clamp(lower, upper)
    for _ in range(steps):
        with torch.enable_grad():
            x.requires_grad_(True)
            value = objective(x)
            grad, = torch.autograd.grad(value.sum(), x)
        x = x.detach()
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if grad_transform is not None:
            grad = grad_transform(grad)
        if mask is not None:
            grad = grad * mask
        x = x + step_size * scale * grad / _per_image_l2(grad)
        if linf is not None:
            x = origin + (x - origin).clamp(-linf * scale, linf * scale)
        x = x.clamp(lower, upper)
    return x.detach()


def fgsm_l2(objective: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, step_size: float = 30.0,
            linf: float | None = 10.0, pixel_range: float = 255.0) -> torch.Tensor:
    """One L2-normalised step (the cheap FGSM-style variant of :func:`l2_pgd`)."""
    return l2_pgd(objective, images, steps=1, step_size=step_size, linf=linf, pixel_range=pixel_range)
