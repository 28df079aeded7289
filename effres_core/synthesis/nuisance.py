"""Nuisances for training: changes that must NOT change the effective resolution label.

Real photos and generated images carry noise, compression, sharpening and tone changes. A model
that reads noise or ringing as detail ranks them wrongly, so training applies these after the
degradation, keeping the label. Evaluation deliberately uses *other* nuisances (see
``effres_core.evaluation``) to measure generalisation rather than memorisation.

All functions take ``[B, 3, H, W]`` float in [0, 1] and a ``numpy.random.Generator``.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

TRAINING_NUISANCES = ("gaussian_noise", "jpeg", "unsharp_mask", "tone", "colour_shift", "grayscale")


def gaussian_noise(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Sensor-like noise: per-pixel Gaussian, sometimes luminance-only, sometimes signal-dependent."""
    sigma = rng.uniform(0.004, 0.035)
    g = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**31)))
    shape = (x.shape[0], 1 if rng.random() < 0.4 else 3, *x.shape[2:])
    noise = torch.randn(shape, generator=g).to(x.device, x.dtype) * sigma
    if rng.random() < 0.5:  # shot-noise-like: stronger in bright areas
        noise = noise * (2 * x.mean(1, keepdim=True)).sqrt()
    return (x + noise).clamp(0, 1)


def jpeg(x: torch.Tensor, rng: np.random.Generator, quality: int | None = None) -> torch.Tensor:
    """JPEG round trip at moderate quality (Pillow, 4:2:0 or 4:4:4)."""
    from PIL import Image

    q = int(quality if quality is not None else rng.integers(35, 92))
    subsampling = int(rng.choice([0, 2]))
    out = []
    for img in x.detach().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q, subsampling=subsampling)
        out.append(torch.from_numpy(np.array(Image.open(buf).convert("RGB"))))
    return torch.stack(out).permute(0, 3, 1, 2).to(x.device, x.dtype) / 255.0


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def unsharp_mask(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Sharpening (as applied to upscales): ``x + amount * (x - blur(x))``; adds no real detail."""
    sigma, amount = rng.uniform(0.6, 2.5), rng.uniform(0.3, 1.5)
    return (x + amount * (x - _gaussian_blur(x, sigma))).clamp(0, 1)


def tone(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Contrast, brightness and gamma changes."""
    contrast, brightness, gamma = rng.uniform(0.6, 1.4), rng.uniform(-0.12, 0.12), rng.uniform(0.7, 1.4)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    y = ((x - mean) * contrast + mean + brightness).clamp(0, 1)
    return y.clamp(min=1e-6) ** gamma


def colour_shift(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """White-balance-like per-channel gains."""
    gains = torch.tensor(rng.uniform(0.8, 1.2, size=3), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * gains).clamp(0, 1)


def grayscale(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x).contiguous()


_FUNCTIONS = {"gaussian_noise": gaussian_noise, "jpeg": jpeg, "unsharp_mask": unsharp_mask, "tone": tone,
              "colour_shift": colour_shift, "grayscale": grayscale}


def apply_nuisance(x: torch.Tensor, name: str, rng: np.random.Generator) -> torch.Tensor:
    """Apply one named training nuisance."""
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown nuisance {name!r}; choose one of {TRAINING_NUISANCES}")
    return _FUNCTIONS[name](x, rng)


def random_nuisances(x: torch.Tensor, rng: np.random.Generator, probability: float = 0.6,
                     names: tuple[str, ...] = TRAINING_NUISANCES, max_count: int = 2) -> tuple[torch.Tensor, list[str]]:
    """With ``probability``, apply 1..``max_count`` distinct random nuisances in random order."""
    if rng.random() >= probability:
        return x, []
    count = int(rng.integers(1, max_count + 1))
    chosen = list(rng.choice(names, size=min(count, len(names)), replace=False))
    for name in chosen:
        x = apply_nuisance(x, name, rng)
    return x, chosen
