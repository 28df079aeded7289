"""Antialiased resizing with the paper's eight kernels, in pure torch (batched, differentiable).

Resizing is separable scale-and-translate resampling, as in TensorFlow's ``scale_and_translate``
and Pillow's ``resize``: output pixel ``i`` is centred at input coordinate ``(i + 0.5) / s`` and,
when downscaling (``s < 1``), the kernel is stretched by ``1 / s`` so it low-passes before it
samples. Each axis becomes one dense ``[out, in]`` matrix, so a resize is two matmuls.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
from torch import nn

KERNELS = ("area", "bicubic", "bilinear", "gaussian", "lanczos3", "lanczos5", "mitchellcubic", "nearest")


def _sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.sinc(x)  # sin(pi x) / (pi x)


def _cubic(x: torch.Tensor, b: float, c: float) -> torch.Tensor:
    """Mitchell-Netravali family; (b, c) = (0, 0.5) is Keys' cubic with a = -0.5."""
    x = x.abs()
    x2, x3 = x * x, x * x * x
    near = ((12 - 9 * b - 6 * c) * x3 + (-18 + 12 * b + 6 * c) * x2 + (6 - 2 * b)) / 6
    far = ((-b - 6 * c) * x3 + (6 * b + 30 * c) * x2 + (-12 * b - 48 * c) * x + (8 * b + 24 * c)) / 6
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _kernel(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "area":
        return ((x >= -0.5) & (x < 0.5)).to(x.dtype)
    if name == "bilinear":
        return (1 - x.abs()).clamp(min=0)
    if name == "bicubic":
        return _cubic(x, 0.0, 0.5)
    if name == "mitchellcubic":
        return _cubic(x, 1 / 3, 1 / 3)
    if name == "lanczos3":
        return torch.where(x.abs() < 3, _sinc(x) * _sinc(x / 3), torch.zeros_like(x))
    if name == "lanczos5":
        return torch.where(x.abs() < 5, _sinc(x) * _sinc(x / 5), torch.zeros_like(x))
    if name == "gaussian":
        # TensorFlow's choice: radius 1.5, sigma = radius / 3.
        return torch.where(x.abs() < 1.5, torch.exp(-0.5 * (x / 0.5) ** 2), torch.zeros_like(x))
    raise ValueError(f"unknown kernel {name!r}; choose one of {KERNELS}")


_SUPPORT = {"area": 0.5, "bilinear": 1.0, "bicubic": 2.0, "mitchellcubic": 2.0, "lanczos3": 3.0,
            "lanczos5": 5.0, "gaussian": 1.5}


@lru_cache(maxsize=256)
def _resize_matrix_cpu(in_size: int, out_size: int, kernel: str) -> torch.Tensor:
    scale = out_size / in_size
    if kernel == "nearest":
        # Nearest neighbour never antialiases: it is the aliasing resizer people actually use.
        src = torch.clamp(((torch.arange(out_size, dtype=torch.float64) + 0.5) / scale).floor().long(), 0, in_size - 1)
        m = torch.zeros(out_size, in_size, dtype=torch.float64)
        m[torch.arange(out_size), src] = 1.0
        return m
    if kernel not in _SUPPORT:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    stretch = max(1.0, 1.0 / scale)
    centre = (torch.arange(out_size, dtype=torch.float64) + 0.5) / scale  # in input pixel units
    taps = torch.arange(in_size, dtype=torch.float64) + 0.5
    dist = (taps[None, :] - centre[:, None]) / stretch
    m = _kernel(kernel, dist)
    total = m.sum(dim=1, keepdim=True)
    # Far out of range (never for sane sizes) fall back to the nearest tap instead of dividing by 0.
    empty = total.abs() < 1e-12
    if empty.any():
        nearest = torch.clamp(centre.floor().long(), 0, in_size - 1)
        m[empty.squeeze(1), nearest[empty.squeeze(1)]] = 1.0
        total = m.sum(dim=1, keepdim=True)
    return m / total


def resize_matrix(in_size: int, out_size: int, kernel: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """The ``[out_size, in_size]`` resampling matrix of one axis (rows sum to 1)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    return _resize_matrix_cpu(int(in_size), int(out_size), kernel).to(device=device, dtype=dtype)


def resize_antialiased(images: torch.Tensor, size: tuple[int, int], kernel: str = "bicubic") -> torch.Tensor:
    """Resize ``[..., H, W]`` images to ``size = (h, w)`` with an antialiased kernel.

    Args:
        images: float tensor ``[..., H, W]`` (e.g. ``[B, C, H, W]``).
        size: output ``(height, width)``.
        kernel: one of :data:`KERNELS`.

    Returns:
        ``[..., h, w]`` tensor of the input's dtype; differentiable.

    Example:
        >>> x = torch.rand(1, 3, 64, 48)
        >>> resize_antialiased(x, (16, 12), "lanczos3").shape
        torch.Size([1, 3, 16, 12])
    """
    if not torch.is_tensor(images) or not images.is_floating_point():
        raise TypeError("resize_antialiased expects a floating-point tensor")
    if images.ndim < 2:
        raise ValueError(f"expected [..., H, W], got shape {tuple(images.shape)}")
    h, w = int(size[0]), int(size[1])
    in_h, in_w = images.shape[-2:]
    out = images
    if in_h != h:
        mh = resize_matrix(in_h, h, kernel, images.device, images.dtype)
        out = torch.matmul(mh, out)
    if in_w != w:
        mw = resize_matrix(in_w, w, kernel, images.device, images.dtype)
        out = torch.matmul(out, mw.transpose(0, 1))
    return out


def resample_down_up(images: torch.Tensor, factor: float, down: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor],
                     up: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Downscale by ``factor`` with the resizer ``down`` and back to the original size with ``up``.

    A resizer maps ``(images, (h, w))`` to resized images. Returns the result and the factor
    actually applied (the rounded small height over the height): the true effective resolution
    ratio of the result.
    """
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    h, w = images.shape[-2:]
    small = (max(1, round(h * factor)), max(1, round(w * factor)))
    if small == (h, w):
        return images, 1.0
    return up(down(images, small), (h, w)), small[0] / h


def degrade(images: torch.Tensor, factor: float, down_kernel: str = "bicubic",
            up_kernel: str | None = None) -> tuple[torch.Tensor, float]:
    """Downscale by ``factor`` with an antialiased kernel and scale back up to the original size.

    Returns the degraded images and the factor actually applied (see :func:`resample_down_up`).
    """
    return resample_down_up(images, factor, lambda x, size: resize_antialiased(x, size, down_kernel),
                            lambda x, size: resize_antialiased(x, size, up_kernel or down_kernel))


class Resize(nn.Module):
    """Module form of :func:`resize_antialiased`."""

    def __init__(self, size: tuple[int, int], kernel: str = "bicubic"):
        super().__init__()
        self.size, self.kernel = (int(size[0]), int(size[1])), kernel

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return resize_antialiased(images, self.size, self.kernel)
