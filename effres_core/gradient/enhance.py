"""The enhancer: L2 projected gradient ascent (or descent) on the scorer's own prediction.

After adversarial training the scorer's input gradient is meaningful (paper, supplement 6):
raising the predicted effective resolution with strong L2 PGD (10 steps of L2 length 100 in
[0, 255] pixel units) adds plausible skin and hair detail, lowering it blurs the face. This module
wraps :func:`~effres_core.gradient.adversarial.l2_pgd` around the memory-bounded objective
:func:`~effres_core.gradient.losses.sharpness_score` (mean of the raw patch scores, so every patch pulls).

    >>> from effres_core import EffRes
    >>> from effres_core.gradient.enhance import enhance
    >>> model = EffRes.from_pretrained()
    >>> result = enhance(model, rgb_uint8)             # face mask by default: background untouched
    >>> result.images, result.before, result.after

Step sizes are per patch area: the paper's L2 step was taken on one patch, so for a face region
of ``A`` pixels the per-image L2 step is ``step_size * sqrt(A / patch_size**2)``. The change per
pixel therefore does not fade as images grow (``step_per="image"`` gives the literal per-image
length instead).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .adversarial import l2_pgd
from .losses import eval_mode, sharpness_score
from ..model.net import scoring_net
from ..measure.scoring import effective_resolution_ratio

logger = logging.getLogger("effres")

DIRECTIONS = ("sharpen", "soften")
STEP_UNITS = ("patch", "image")


@dataclass
class EnhanceResult:
    """What :func:`enhance` returns.

    Attributes:
        images: the enhanced images, in the input's type, layout, dtype and range.
        before, after: ``[B]`` effective resolution ratio of the (masked) images, the scorer's usual
            median of clipped patch scores; NaN where no patch was usable.
        raw_before, raw_after: ``[B]`` the optimised objective, mean of the raw patch scores.
        mask: the ``[B, H, W]`` mask that limited the change, or ``None`` (whole image).
    """

    images: Any
    before: torch.Tensor
    after: torch.Tensor
    raw_before: torch.Tensor
    raw_after: torch.Tensor
    mask: torch.Tensor | None = None


# ---- input and output conversion ------------------------------------------------------------------

def _to_working(images) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """Any supported image input -> ``[B, 3, H, W]`` float32 in [0, 1], and a function turning a
    result of that form back into the input's kind (type, layout, batch dim, dtype, device)."""
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
            raise ValueError(f"expected an [H, W, 3] or [B, H, W, 3] RGB array, got shape {arr.shape}")
        if arr.dtype == np.uint8:
            x = torch.from_numpy(np.array(arr, copy=True)).float().div(255.0)
        elif np.issubdtype(arr.dtype, np.floating):
            x = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
        else:
            raise TypeError(f"expected a uint8 or float image array, got dtype {arr.dtype}")
        batched = arr.ndim == 4
        x = (x if batched else x[None]).permute(0, 3, 1, 2)
        dtype = arr.dtype

        def restore(y: torch.Tensor):
            y = y.permute(0, 2, 3, 1).cpu()
            out = (y * 255.0).round().clamp(0, 255).to(torch.uint8).numpy() if dtype == np.uint8 \
                else y.numpy().astype(dtype)
            return out if batched else out[0]

        return _check_range(x), restore
    if torch.is_tensor(images):
        t = images
        if t.ndim not in (3, 4):
            raise ValueError(f"expected a [B, 3, H, W] or [B, H, W, 3] image tensor, got shape {tuple(t.shape)}")
        batched = t.ndim == 4
        t4 = t if batched else t[None]
        channels_last = t4.shape[1] != 3 and t4.shape[-1] == 3  # ComfyUI's IMAGE layout
        if not channels_last and t4.shape[1] != 3:
            raise ValueError(f"expected 3 RGB channels in shape {tuple(t.shape)}")
        if t.dtype == torch.uint8:
            x = t4.float().div(255.0)
        elif t.is_floating_point():
            x = t4.detach().float()
        else:
            raise TypeError(f"expected a uint8 or float image tensor, got dtype {t.dtype}")
        x = x.permute(0, 3, 1, 2) if channels_last else x
        dtype, device = t.dtype, t.device

        def restore(y: torch.Tensor):
            y = y.permute(0, 2, 3, 1) if channels_last else y
            y = (y * 255.0).round().clamp(0, 255).to(torch.uint8) if dtype == torch.uint8 else y.to(dtype)
            y = y.to(device).contiguous()
            return y if batched else y[0]

        return _check_range(x.contiguous()), restore
    raise TypeError(f"cannot enhance a {type(images).__name__}: pass an RGB array or an image tensor "
                    "(or use enhance_file for paths)")


def _check_range(x: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise ValueError("images hold NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
    return x.clamp(0.0, 1.0)


def _resolve_mask(model: nn.Module, x: torch.Tensor, mask) -> torch.Tensor | None:
    """``None`` -> the model's face mask if it has one; ``False``/``"none"`` -> whole image."""
    b, _, h, w = x.shape
    if mask is False or (isinstance(mask, str) and mask.lower() == "none"):
        return None
    if mask is None:
        if hasattr(model, "face_masks"):
            return model.face_masks(x).float()
        return None
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not torch.is_tensor(mask):
        raise TypeError(f"mask must be a tensor, an array, None or False, got {type(mask).__name__}")
    m = mask.detach().float().cpu()
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 2:
        m = m.expand(b, h, w)
    if m.ndim != 3 or tuple(m.shape[-2:]) != (h, w) or m.shape[0] not in (1, b):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not fit images [{b}, 3, {h}, {w}]")
    return m.expand(b, h, w).clamp(0.0, 1.0)


def _settings(model: nn.Module) -> tuple[nn.Module, dict]:
    net = scoring_net(model)
    if not isinstance(net, nn.Module) or not hasattr(net, "patch_size"):
        raise TypeError(f"expected an EffRes or an EffResNet, got {type(model).__name__}")
    return net, {"n_patches": getattr(model, "n_patches", 100), "min_foreground": getattr(model, "min_foreground", 0.9),
                 "chunk_size": getattr(model, "chunk_size", 16)}


# ---- the enhancer ---------------------------------------------------------------------------------

def enhance(model: nn.Module, images, direction: str = "sharpen", steps: int = 10, step_size: float = 100.0,
            max_change: float | None = None, mask=None, n_patches: int | None = None,
            min_foreground: float | None = None, chunk_size: int | None = None,
            step_per: str = "patch") -> EnhanceResult:
    """Sharpen (or soften) faces by L2 PGD on the scorer's predicted effective resolution.

    Args:
        model: an :class:`~effres_core.measure.scorer.EffRes` (its face mask is the default ``mask``) or a
            bare :class:`~effres_core.model.net.EffResNet` (whole image by default).
        images: ``[B, 3, H, W]`` / ``[3, H, W]`` or ComfyUI ``[B, H, W, 3]`` tensor (float in [0, 1]
            or uint8), or an ``[H, W, 3]`` / ``[B, H, W, 3]`` array (uint8, or float in [0, 1]).
        direction: ``"sharpen"`` raises the predicted ratio, ``"soften"`` lowers it.
        steps: PGD steps (the paper's 10).
        step_size: L2 length of each step in [0, 255] pixel units, per patch area (see module doc).
        max_change: optional L-infinity bound on the total change per pixel, in [0, 255] units.
        mask: ``None`` (EffRes: its face mask; bare net: whole image), ``False`` or ``"none"``
            (whole image), or weights ``[B, H, W]`` / ``[H, W]`` in [0, 1]. Pixels with weight 0 never
            change; only patches with at least ``min_foreground`` mask count in the objective.
        n_patches, min_foreground, chunk_size: the scoring grid and memory knob; default to the
            model's settings (100, 0.9, its chunk size). Peak memory is one chunk of patches.
        step_per: ``"patch"`` (scale the step with the masked area) or ``"image"`` (literal).

    Returns:
        :class:`EnhanceResult` with the images in the input's kind and the scores before and after.
        Images are processed one at a time, so a batch gives exactly what its items give alone.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if step_per not in STEP_UNITS:
        raise ValueError(f"step_per must be one of {STEP_UNITS}, got {step_per!r}")
    if steps < 0 or step_size < 0:
        raise ValueError(f"steps and step_size must be >= 0, got {steps} and {step_size}")
    if max_change is not None and max_change <= 0:
        raise ValueError(f"max_change must be positive (or None), got {max_change}")
    net, defaults = _settings(model)
    n_patches = n_patches or defaults["n_patches"]
    min_foreground = defaults["min_foreground"] if min_foreground is None else min_foreground
    chunk_size = chunk_size or defaults["chunk_size"]
    x, restore = _to_working(images)
    device = next(net.parameters()).device
    m = _resolve_mask(model, x, mask)
    x = x.to(device)
    sign = 1.0 if direction == "sharpen" else -1.0
    p = net.patch_size
    score_kw = dict(n_patches=n_patches, min_foreground=min_foreground, chunk_size=chunk_size)

    def scores(t: torch.Tensor, mt: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            ratio = effective_resolution_ratio(net, t, mt, reduce="median", clip=True, **score_kw)
            return ratio.cpu(), sharpness_score(net, t, mt, **score_kw).cpu()

    outs, before, after, raw_before, raw_after = [], [], [], [], []
    with eval_mode(net):
        for i in range(x.shape[0]):
            xi = x[i:i + 1]
            mi = None if m is None else m[i:i + 1].to(device)
            r0, s0 = scores(xi, mi)
            area = float(mi.sum()) if mi is not None else float(xi.shape[-2] * xi.shape[-1])
            if area == 0 or torch.isnan(s0).all():
                logger.warning("image %d: no usable face patch (mask empty or too small); left unchanged", i)
                yi = xi.clone()
            else:
                step = step_size * (math.sqrt(area) / p if step_per == "patch" else 1.0)

                def objective(t: torch.Tensor, mi=mi) -> torch.Tensor:
                    return sign * sharpness_score(net, t, mi, **score_kw)

                yi = l2_pgd(objective, xi, steps=steps, step_size=step, linf=max_change, pixel_range=255.0, mask=mi)
            r1, s1 = scores(yi, mi)
            outs.append(yi)
            before.append(r0), after.append(r1), raw_before.append(s0), raw_after.append(s1)
    return EnhanceResult(images=restore(torch.cat(outs)), before=torch.cat(before), after=torch.cat(after),
                         raw_before=torch.cat(raw_before), raw_after=torch.cat(raw_after), mask=m)


def enhance_file(in_path: str | os.PathLike, out_path: str | os.PathLike, model: nn.Module | None = None,
                 **kwargs) -> EnhanceResult:
    """Enhance one image file and write the result (PNG keeps the fine detail; JPEG is saved at
    quality 95 without chroma subsampling). ``model`` defaults to the bundled EffRes; ``kwargs``
    go to :func:`enhance`."""
    from PIL import Image

    from ..measure.imageio import load_image

    if model is None:
        from ..measure.scorer import EffRes

        model = EffRes.from_pretrained()
    result = enhance(model, load_image(in_path), **kwargs)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_kw = {"quality": 95, "subsampling": 0} if out_path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(result.images).save(out_path, **save_kw)
    return result


class _CallableModule(types.ModuleType):
    """``effres_core.gradient.enhance`` names both this module and its main function (a lazy export of the
    package). Once the module is imported, Python binds the package attribute to the module, so
    ``from effres_core.gradient import enhance`` may hand out the module; calling it still enhances."""

    def __call__(self, *args, **kwargs) -> EnhanceResult:
        return enhance(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
