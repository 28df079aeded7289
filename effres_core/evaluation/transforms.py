"""Resizers and nuisances the evaluation sets are made with: the training's kernels, and other libraries'
resizers (OpenCV, Pillow) and nuisances (shot noise, salt and pepper, WebP, sharpening, saturation, tone)
that training never uses. Images are ``[1, 3, H, W]`` float tensors in [0, 1]."""

from __future__ import annotations

import io
import logging
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..synthesis.degradations import KERNELS, resample_down_up, resize_antialiased

logger = logging.getLogger("effres")

Image4 = torch.Tensor  # [1, 3, H, W] float in [0, 1]
Resizer = Callable[[Image4, tuple[int, int]], Image4]
Nuisance = Callable[[Image4, np.random.Generator], Image4]

FLAVOURS = ("seen", "unseen")

# --------------------------------------------------------------------------------------- resizers

def _to_hwc(x: Image4) -> np.ndarray:
    return np.ascontiguousarray(x[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32))


def _from_hwc(a: np.ndarray) -> Image4:
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def _torch_resizer(kernel: str) -> Resizer:
    return lambda x, size: resize_antialiased(x, size, kernel)


def _cv2_resizer(flag_name: str) -> Resizer:
    def resize(x: Image4, size: tuple[int, int]) -> Image4:
        import cv2

        # OpenCV never antialiases except INTER_AREA: downscales alias, as in much real software.
        return _from_hwc(cv2.resize(_to_hwc(x), (size[1], size[0]), interpolation=getattr(cv2, flag_name)))
    return resize


def _pil_resizer(filter_name: str) -> Resizer:
    def resize(x: Image4, size: tuple[int, int]) -> Image4:
        from PIL import Image

        flt = getattr(Image.Resampling, filter_name)
        # Mode "F" keeps float precision; Pillow resizes one channel at a time.
        chans = [np.asarray(Image.fromarray(c).resize((size[1], size[0]), flt)) for c in _to_hwc(x).transpose(2, 0, 1)]
        return _from_hwc(np.stack(chans, axis=2))
    return resize


#: The training's resizers: antialiased, the eight kernels of the recipe.
SEEN_RESIZERS: dict[str, Resizer] = {k: _torch_resizer(k) for k in KERNELS}
#: Resizers of other libraries. OpenCV's cubic is Keys with a = -0.75 and, like its linear and
#: Lanczos-4, does not antialias; Pillow's Hamming window is in no training kernel.
UNSEEN_RESIZERS: dict[str, Resizer] = {
    "opencv_cubic": _cv2_resizer("INTER_CUBIC"),
    "opencv_linear": _cv2_resizer("INTER_LINEAR"),
    "opencv_lanczos4": _cv2_resizer("INTER_LANCZOS4"),
    "opencv_area": _cv2_resizer("INTER_AREA"),
    "pillow_hamming": _pil_resizer("HAMMING"),
    "pillow_box": _pil_resizer("BOX"),
}
#: Used in the ``unseen`` mixed folders. Area/box are left out there: downscaling by area
#: averaging is the training's ``area`` kernel under another name.
UNSEEN_DOWN = ("opencv_cubic", "opencv_linear", "opencv_lanczos4", "pillow_hamming")
#: Upscaling never antialiases, so OpenCV's linear upscale is the training's bilinear: left out.
UNSEEN_UP = ("opencv_cubic", "opencv_lanczos4", "pillow_hamming")


def get_resizer(name: str) -> Resizer:
    if name in SEEN_RESIZERS:
        return SEEN_RESIZERS[name]
    if name in UNSEEN_RESIZERS:
        return UNSEEN_RESIZERS[name]
    raise ValueError(f"unknown resizer {name!r}; choose one of {sorted(SEEN_RESIZERS) + sorted(UNSEEN_RESIZERS)}")


def resample(x: Image4, factor: float, down: str, up: str) -> tuple[Image4, float]:
    """Downscale by ``factor`` with resizer ``down``, back to the original size with ``up``.

    Returns the image and its true factor (the rounded small height over the height).
    """
    return resample_down_up(x, factor, get_resizer(down), get_resizer(up))


# -------------------------------------------------------------------------------------- nuisances

def _luma(x: Image4) -> Image4:
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _torch_rng(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def shot_noise(x: Image4, rng: np.random.Generator, peak: float | None = None) -> Image4:
    """Poisson (photon) noise: ``peak`` photons at white, so dark areas get relatively more noise."""
    peak = float(peak if peak is not None else rng.uniform(40, 250))
    return (torch.poisson(x.clamp(0, 1) * peak, generator=_torch_rng(rng)) / peak).clamp(0, 1)


def salt_and_pepper(x: Image4, rng: np.random.Generator) -> Image4:
    """Isolated black and white pixels (dead/hot pixels, dust): speckle, not detail."""
    amount = rng.uniform(0.001, 0.006)
    u = torch.rand(x.shape[0], 1, *x.shape[2:], generator=_torch_rng(rng))
    out = torch.where(u < amount / 2, torch.zeros_like(x), x)
    return torch.where(u > 1 - amount / 2, torch.ones_like(x), out)


def webp(x: Image4, rng: np.random.Generator, quality: int | None = None) -> Image4:
    """Lossy WebP round trip (a different codec from training's JPEG)."""
    from PIL import Image

    q = int(quality if quality is not None else rng.integers(45, 86))
    rgb = x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=q, method=4)
    return _from_hwc(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0)


def jpeg_quality(x: Image4, quality: int) -> Image4:
    """JPEG round trip at a fixed quality (robustness ladders)."""
    from PIL import Image

    rgb = x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    return _from_hwc(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0)


def laplacian_sharpen(x: Image4, rng: np.random.Generator, amount: float | None = None) -> Image4:
    """``x - amount * Laplacian(x)`` with the 8-neighbour kernel (training sharpens by unsharp mask)."""
    amount = float(amount if amount is not None else rng.uniform(0.15, 0.45))
    k = torch.tensor([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]], dtype=x.dtype).view(1, 1, 3, 3)
    lap = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.repeat(3, 1, 1, 1), groups=3)
    return (x - amount * lap).clamp(0, 1)


def saturation(x: Image4, rng: np.random.Generator) -> Image4:
    """Desaturate or oversaturate around the luma (training shifts gains, not saturation)."""
    s = rng.choice([rng.uniform(0.3, 0.7), rng.uniform(1.3, 1.8)])
    y = _luma(x)
    return (y + s * (x - y)).clamp(0, 1)


def tone_curve(x: Image4, rng: np.random.Generator) -> Image4:
    """An S-shaped (or inverse-S) tone curve, blended in (training uses gamma/contrast instead)."""
    t = rng.uniform(0.3, 0.8) * rng.choice([-1.0, 1.0])
    s_curve = 0.5 - 0.5 * torch.cos(torch.pi * x.clamp(0, 1))
    return (x + t * (s_curve - x)).clamp(0, 1)


#: Nuisances training never applies.
UNSEEN_NUISANCES: dict[str, Nuisance] = {
    "shot_noise": shot_noise,
    "salt_and_pepper": salt_and_pepper,
    "webp": webp,
    "laplacian_sharpen": laplacian_sharpen,
    "saturation": saturation,
    "tone_curve": tone_curve,
}


def seen_nuisances() -> dict[str, Nuisance]:
    """Training's nuisances (from :mod:`effres_core.synthesis.nuisance`), by name."""
    from ..synthesis import nuisance

    return {name: (lambda x, rng, _n=name: nuisance.apply_nuisance(x, _n, rng))
            for name in nuisance.TRAINING_NUISANCES}


def nuisances_for(flavour: str) -> dict[str, Nuisance]:
    if flavour == "seen":
        return seen_nuisances()
    if flavour == "unseen":
        return dict(UNSEEN_NUISANCES)
    raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")


def quantize(x: Image4) -> Image4:
    """Round to 8 bits, as every saved image is."""
    return x.clamp(0, 1).mul(255).round().div(255)
