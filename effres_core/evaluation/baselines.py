"""Classical sharpness scores the model is compared with (the paper's frequency and JPEG baselines,
plus the variance of the Laplacian every practitioner tries first).

Each maps ``[B, 3, H, W]`` RGB in [0, 1] to ``[B]`` scores where higher means sharper. They are
not ratios (their scale depends on content), so only rankings (SRCC, PRA) are meaningful.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from ..measure.scoring import check_images

#: ITU-R BT.601 luma weights, what JPEG and most "grayscale" conversions use.
_LUMA = (0.299, 0.587, 0.114)


def _check(images: torch.Tensor) -> torch.Tensor:
    check_images(images)
    if min(images.shape[-2:]) < 3:
        raise ValueError(f"images must be at least 3x3, got {tuple(images.shape[-2:])}")
    return images


def luma(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, 1, H, W]`` BT.601 luma."""
    w = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True)


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Variance of the 4-neighbour Laplacian of the luma, in 8-bit units (OpenCV's usual recipe).

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> laplacian_variance(x).shape
        torch.Size([2])
    """
    gray = luma(_check(images)) * 255.0
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=gray.dtype,
                          device=gray.device).view(1, 1, 3, 3)
    lap = F.conv2d(gray, kernel)  # valid: no border artefacts
    return lap.flatten(1).var(dim=1)


def high_frequency_share(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Share of the luma's spectral energy above ``cutoff`` cycles per pixel (Nyquist is 0.5).

    A Hann window suppresses the spurious high frequencies of the image borders; the mean
    (DC) is removed so flat brightness does not count.
    """
    if not 0 < cutoff < 0.5 * np.sqrt(2):
        raise ValueError(f"cutoff must be in (0, 0.707) cycles per pixel, got {cutoff}")
    gray = luma(_check(images)).squeeze(1).double()
    h, w = gray.shape[-2:]
    window = torch.hann_window(h, periodic=False, dtype=gray.dtype)[:, None] * \
        torch.hann_window(w, periodic=False, dtype=gray.dtype)[None, :]
    gray = gray - gray.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(gray * window.to(gray.device)).abs() ** 2
    fy = torch.fft.fftfreq(h, dtype=gray.dtype, device=gray.device)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=gray.dtype, device=gray.device)[None, :]
    radius = torch.sqrt(fy * fy + fx * fx)
    # rfft2 stores the columns 1..w/2 once for two conjugate halves; the weights count both.
    weight = torch.full((1, fx.shape[1]), 2.0, dtype=gray.dtype, device=gray.device)
    weight[0, 0] = 1.0
    if w % 2 == 0:
        weight[0, -1] = 1.0
    total = (power * weight).sum(dim=(-2, -1))
    high = (power * weight * (radius > cutoff)).sum(dim=(-2, -1))
    return (high / total.clamp(min=1e-20)).to(images.dtype)


def jpeg_bytes_per_pixel(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """Size of the image as a JPEG at a fixed ``quality``, in bytes per pixel: detail costs bits."""
    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    x = _check(images).detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    sizes = []
    for rgb in x:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
        sizes.append(buf.tell() / (rgb.shape[0] * rgb.shape[1]))
    return torch.tensor(sizes, dtype=images.dtype)


#: The baselines by name, as used in reports.
BASELINES = {
    "laplacian_variance": laplacian_variance,
    "high_frequency_share": high_frequency_share,
    "jpeg_bytes_per_pixel": jpeg_bytes_per_pixel,
}
