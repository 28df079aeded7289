"""The enhancer: L2 projected gradient ascent (or descent) on the scorer's own prediction.

After adversarial training the scorer's input gradient is meaningful (paper, supplement 6):
raising the predicted effective resolution with strong L2 PGD (10 steps of L2 length 100 in
[0, 255] pixel units) adds plausible skin and hair detail, lowering it blurs the face.

    >>> from effres_core import EffRes
    >>> from effres_core.gradient import enhance
    >>> model = EffRes.from_pretrained()
    >>> result = enhance(model, rgb_uint8)             # only the faces change
    >>> result.images, result.before, result.after     # before/after: what model.score says

**What is optimised.** With an :class:`~effres_core.measure.scorer.EffRes` (and no mask of your
own), the patches ``EffRes.score`` takes: each detected face's crop, its grid of about
``n_patches`` patches, those with at least ``min_foreground`` of the face mask. The objective is
their mean soft-clipped score (:func:`~effres_core.gradient.losses.soft_clip`: no reward past 1,
where the reported ratio is clipped). A face the scorer upscales by ``k`` (smaller than its
``face_size``) is upscaled the same way inside the objective, differentiably, and its patch
scores count as ``k * score``: the ratio relative to the face's own pixels, as the scorer
reports it. At every step the grid is **shifted by a random offset**
in ``[0, stride)`` (seeded, so runs repeat): an ascent on one fixed grid partly fits that grid
rather than adding detail, so a grid placed a few pixels away, or another ``n_patches``, would
disagree with the gain; averaged over offsets it is one every grid agrees with.

**The step is filtered** before its L2 normalisation (:func:`filter_step`): blurred with a
Gaussian of ``smooth`` px (no pixel-level ripple), high-passed at ``highpass`` px (no
shading or tone shift: the old enhancer brightened faces), and the same on R, G and B unless
``colour=True`` (brightness detail; no colour blotches).

**before / after** are ``EffRes.score`` of the input and of the returned images: the same
detection, crop, mask and patch grid a user gets (:func:`enhance_file` scores the written file).
With a bare :class:`~effres_core.model.net.EffResNet` there is no detector: they are the masked
whole-image ratio (median of clipped patch scores).

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
import torch.nn.functional as F
from torch import nn

from ..measure.imageio import check_image_values
from ..measure.patches import choose_stride, foreground_fraction, patch_grid, shifted_grid
from ..measure.scoring import effective_resolution_ratio
from ..model.net import scoring_net
from ..synthesis.degradations import resize_antialiased
from .adversarial import l2_pgd
from .losses import eval_mode, sharpness_of_patches

logger = logging.getLogger("effres")

DIRECTIONS = ("sharpen", "soften")
STEP_UNITS = ("patch", "image")


@dataclass
class EnhanceResult:
    """What :func:`enhance` returns.

    Attributes:
        images: the enhanced images, in the input's type, layout, dtype and range.
        before, after: ``[B]`` effective resolution ratio of the input and of ``images``: with an
            ``EffRes``, exactly what ``EffRes.score`` gives them; with a bare net, the masked
            whole-image ratio. NaN where nothing could be scored.
        raw_before, raw_after: ``[B]`` the optimised objective (mean soft-clipped patch score) on
            the unshifted grid; NaN where no patch was usable.
        mask: the ``[B, H, W]`` mask that limited the change, or ``None`` (whole image).
    """

    images: Any
    before: torch.Tensor
    after: torch.Tensor
    raw_before: torch.Tensor
    raw_after: torch.Tensor
    mask: torch.Tensor | None = None


# ---- input and output conversion ------------------------------------------------------------------

def _unit(x: torch.Tensor, integer: bool) -> torch.Tensor:
    return x.float().div(255.0) if integer else x.detach().float().clamp(0.0, 1.0)


def _to_working(images) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """Any supported image input -> ``[B, 3, H, W]`` float32 in [0, 1], and a function turning a
    result of that form back into the input's kind (type, layout, batch dim, dtype, device).
    Values follow the scorer's rule (integers 0..255, floats [0, 1]; see ``check_image_values``)."""
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
            raise ValueError(f"expected an [H, W, 3] or [B, H, W, 3] RGB array, got shape {arr.shape}")
        check_image_values(arr)
        integer = np.issubdtype(arr.dtype, np.integer)
        x = _unit(torch.from_numpy(np.array(arr, dtype=np.float32 if not integer else np.int64, copy=True)), integer)
        batched = arr.ndim == 4
        x = (x if batched else x[None]).permute(0, 3, 1, 2)
        dtype = arr.dtype

        def restore(y: torch.Tensor):
            y = y.permute(0, 2, 3, 1).cpu()
            out = (y * 255.0).round().clamp(0, 255).numpy().astype(dtype) if integer else y.numpy().astype(dtype)
            return out if batched else out[0]

        return x.contiguous(), restore
    if torch.is_tensor(images):
        t = images
        if t.ndim not in (3, 4):
            raise ValueError(f"expected a [B, 3, H, W] or [B, H, W, 3] image tensor, got shape {tuple(t.shape)}")
        batched = t.ndim == 4
        t4 = t if batched else t[None]
        channels_last = t4.shape[1] != 3 and t4.shape[-1] == 3  # ComfyUI's IMAGE layout
        if not channels_last and t4.shape[1] != 3:
            raise ValueError(f"expected 3 RGB channels in shape {tuple(t.shape)}")
        check_image_values(t4)
        integer = not t.is_floating_point()
        x = _unit(t4.detach(), integer)
        x = x.permute(0, 3, 1, 2) if channels_last else x
        dtype, device = t.dtype, t.device

        def restore(y: torch.Tensor):
            y = y.permute(0, 2, 3, 1) if channels_last else y
            y = (y * 255.0).round().clamp(0, 255).to(dtype) if integer else y.to(dtype)
            y = y.to(device).contiguous()
            return y if batched else y[0]

        return x.contiguous(), restore
    raise TypeError(f"cannot enhance a {type(images).__name__}: pass an RGB array or an image tensor "
                    "(or use enhance_file for paths)")


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


def _scores_images(model: nn.Module) -> bool:
    """An ``EffRes`` (detects faces and scores images itself), not a bare net or a stand-in."""
    return callable(getattr(model, "score", None)) and callable(getattr(model, "face_regions", None))


def _ratios_of(model: nn.Module, images, batched: bool) -> torch.Tensor:
    """``[B]`` of ``model.score`` ratios for images in any supported kind (NaN: not scored)."""
    items = list(images) if batched else [images]
    results = model.score(items)
    return torch.tensor([float("nan") if r.ratio is None else r.ratio for r in results], dtype=torch.float32)


# ---- the step filter ------------------------------------------------------------------------------

def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with standard deviation ``sigma`` px (reflected
    borders; replicated where the image is smaller than the kernel). ``sigma <= 0``: ``x``."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    mode = "reflect" if radius < min(h, w) else "replicate"
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def filter_step(grad: torch.Tensor, smooth: float = 1.0, highpass: float | None = 8.0,
                colour: bool = False) -> torch.Tensor:
    """Shape an ascent step ``[B, 3, H, W]`` into detail: brightness only (the channel mean on all
    three channels) unless ``colour``, blurred with a Gaussian of ``smooth`` px, minus its own
    Gaussian blur at ``highpass`` px (changes broader than that, shading and tone, removed;
    ``None`` or 0 keeps them).

    Example:
        >>> g = filter_step(torch.randn(1, 3, 64, 64))
        >>> bool((g[:, 0] == g[:, 1]).all()), round(float(g.mean()), 3) == 0.0
        (True, True)
    """
    if grad.ndim != 4 or grad.shape[1] != 3:
        raise ValueError(f"expected a [B, 3, H, W] gradient, got shape {tuple(grad.shape)}")
    if not colour:
        grad = grad.mean(dim=1, keepdim=True).expand_as(grad)
    grad = gaussian_blur(grad, smooth)
    if highpass:
        grad = grad - gaussian_blur(grad, highpass)
    return grad


# ---- the objective --------------------------------------------------------------------------------

@dataclass
class _Region:
    """Where patches come from: a crop ``(top, left, height, width)`` of the image, the share of
    face in it (``None``: all of it counts) and the factor ``scale`` the scorer upscales the crop
    by before taking patches (a face smaller than its ``face_size``), its scores multiplied back."""

    top: int
    left: int
    height: int
    width: int
    mask: torch.Tensor | None = None
    scale: float = 1.0

    def upscaled_size(self, patch_size: int) -> tuple[int, int]:
        """The crop's size as the scorer scores it (the scorer's rule: at least one patch)."""
        if self.scale == 1.0:
            return self.height, self.width
        return max(patch_size, round(self.height * self.scale)), max(patch_size, round(self.width * self.scale))

    def pixels(self, t: torch.Tensor, patch_size: int) -> torch.Tensor:
        """The crop of ``t`` as the scorer sees it: upscaled with the training bicubic when ``scale > 1``."""
        crop = t[..., self.top:self.top + self.height, self.left:self.left + self.width]
        if self.scale == 1.0:
            return crop
        return resize_antialiased(crop, self.upscaled_size(patch_size), "bicubic").clamp(0, 1)


class _PatchPlan:
    """The boxes of the patches the scorer would take from some regions, on their own grids of
    about ``n_patches`` patches, or on those grids shifted by a random offset (``shifted``).

    :meth:`groups` gives ``(region, boxes)`` pairs: ``region`` is ``None`` for the patches of all
    unscaled regions, in image coordinates; an upscaled region has its own group, with boxes in
    the coordinates of its upscaled crop."""

    def __init__(self, regions: list[_Region], patch_size: int, n_patches: int, min_foreground: float, seed: int):
        self.p, self.n_patches, self.min_foreground = patch_size, n_patches, min_foreground
        self.regions = []
        for r in regions:
            h, w = r.upscaled_size(patch_size)
            if h < patch_size or w < patch_size:
                continue
            mask = r.mask
            if mask is not None and r.scale != 1.0:  # the scorer's own mask resize
                mask = F.interpolate(mask[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            self.regions.append((r, h, w, mask))
        self.rng = np.random.default_rng(seed)

    def _boxes(self, mask: torch.Tensor | None, grid, top: int, left: int) -> list[tuple[int, int, int, int]]:
        if mask is None:
            keep = [True] * grid.count
        else:
            keep = (foreground_fraction(mask[None], grid)[0] >= self.min_foreground).tolist()
        return [(x0 + left, y0 + top, x1 + left, y1 + top) for (x0, y0, x1, y1), k in zip(grid.boxes(), keep) if k]

    def groups(self, shifted: bool = False) -> list[tuple[_Region | None, list[tuple[int, int, int, int]]]]:
        plain, scaled = [], []
        for r, h, w, mask in self.regions:
            grid = patch_grid(h, w, self.p, choose_stride(h, w, self.p, self.n_patches))
            if shifted:
                top = int(self.rng.integers(0, min(grid.stride - 1, h - self.p) + 1))
                left = int(self.rng.integers(0, min(grid.stride - 1, w - self.p) + 1))
                grid = shifted_grid(h, w, self.p, grid.stride, top, left)
            if r.scale == 1.0:
                plain += self._boxes(mask, grid, r.top, r.left)
            else:
                boxes = self._boxes(mask, grid, 0, 0)
                if boxes:
                    scaled.append((r, boxes))
        return ([(None, plain)] if plain else []) + scaled


def _face_regions(model: nn.Module, x: torch.Tensor) -> tuple[list[_Region], torch.Tensor]:
    """The scorer's face crops of one ``[1, 3, H, W]`` image (faces it would score: at least its
    ``min_face_size``, with its upscale factor) and the union of their masks ``[1, H, W]``."""
    rgb = (x[0].permute(1, 2, 0).cpu() * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    full = np.zeros(rgb.shape[:2], dtype=np.float32)
    regions = []
    for box, crop, m in model.face_regions(rgb):
        if model.face_side(box, crop) < model.min_face_size:
            continue  # the scorer does not score it either
        scale = float(model.face_upscale(box, crop))
        region = full[crop.y0:crop.y1, crop.x0:crop.x1]
        np.maximum(region, m, out=region)
        regions.append(_Region(crop.y0, crop.x0, crop.height, crop.width,
                               torch.from_numpy(np.ascontiguousarray(m)), scale))
    return regions, torch.from_numpy(full)[None]


# ---- the enhancer ---------------------------------------------------------------------------------

def enhance(model: nn.Module, images, direction: str = "sharpen", steps: int = 10, step_size: float = 100.0,
            max_change: float | None = None, mask=None, n_patches: int | None = None,
            min_foreground: float | None = None, chunk_size: int | None = None,
            step_per: str = "patch", jitter: bool = True, smooth: float = 1.0, highpass: float | None = 8.0,
            colour: bool = False, seed: int = 0, score_after: bool = True) -> EnhanceResult:
    """Sharpen (or soften) faces by L2 PGD on the scorer's predicted effective resolution.

    Args:
        model: an :class:`~effres_core.measure.scorer.EffRes` (its faces, crops and masks are the
            default region, and it reports ``before``/``after``) or a bare
            :class:`~effres_core.model.net.EffResNet` (whole image by default).
        images: ``[B, 3, H, W]`` / ``[3, H, W]`` or ComfyUI ``[B, H, W, 3]`` tensor, or an
            ``[H, W, 3]`` / ``[B, H, W, 3]`` array; integers 0..255 or floats in [0, 1].
        direction: ``"sharpen"`` raises the predicted ratio, ``"soften"`` lowers it.
        steps: PGD steps (the paper's 10).
        step_size: L2 length of each step in [0, 255] pixel units, per patch area (see module doc).
        max_change: optional L-infinity bound on the total change per pixel, in [0, 255] units.
        mask: ``None`` (EffRes: its face crops and masks; bare net: whole image), ``False`` or
            ``"none"`` (whole image), or weights ``[B, H, W]`` / ``[H, W]`` in [0, 1]. Pixels with
            weight 0 never change; only patches with at least ``min_foreground`` mask count.
        n_patches, min_foreground, chunk_size: the scoring grid and memory knob; default to the
            model's settings (100, 0.9, its chunk size). Peak memory is one chunk of patches.
        step_per: ``"patch"`` (scale the step with the masked area) or ``"image"`` (literal).
        jitter: shift the patch grid by a random offset at every step (default), so the gain does
            not depend on one grid; ``False`` ascends on the scorer's own grid.
        smooth, highpass, colour: the step filter (:func:`filter_step`): Gaussian blur in px
            (0: off), high-pass scale in px (``None``: off), and whether colour may change.
        seed: seeds the grid offsets; the same seed gives the same result.
        score_after: with an ``EffRes``, score the returned images for ``after`` (False: ``after`` is
            NaN; :func:`enhance_file` scores the written file instead).

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
    if smooth < 0 or (highpass is not None and highpass < 0):
        raise ValueError(f"smooth and highpass must be >= 0, got {smooth} and {highpass}")
    net, defaults = _settings(model)
    n_patches = n_patches or defaults["n_patches"]
    min_foreground = defaults["min_foreground"] if min_foreground is None else min_foreground
    chunk_size = chunk_size or defaults["chunk_size"]
    x, restore = _to_working(images)
    scorer = _scores_images(model)
    by_faces = scorer and mask is None
    m = None if by_faces else _resolve_mask(model, x, mask)
    device = next(net.parameters()).device
    sign = 1.0 if direction == "sharpen" else -1.0
    p = net.patch_size

    def shape(grad: torch.Tensor) -> torch.Tensor:
        return filter_step(grad, smooth=smooth, highpass=highpass, colour=colour)

    outs, masks, raw_before, raw_after = [], [], [], []
    with eval_mode(net):
        for i in range(x.shape[0]):
            xi = x[i:i + 1].to(device)
            if by_faces:
                regions, mi = _face_regions(model, x[i:i + 1])
            else:
                mi = None if m is None else m[i:i + 1]
                regions = [_Region(0, 0, xi.shape[-2], xi.shape[-1], None if mi is None else mi[0])]
            masks.append(mi)
            mi = None if mi is None else mi.to(device)
            plan = _PatchPlan(regions, p, n_patches, min_foreground, seed)
            fixed = plan.groups()

            def value(t: torch.Tensor, groups) -> torch.Tensor:
                """Mean soft-clipped score over every group's patches, each relative to its face's pixels."""
                total, count = 0.0, 0
                for region, boxes in groups:
                    pixels = t if region is None else region.pixels(t, p)
                    scale = 1.0 if region is None else region.scale
                    mean = sharpness_of_patches(net, pixels, boxes, chunk_size=chunk_size, clip="soft", scale=scale)
                    total, count = total + mean * len(boxes), count + len(boxes)
                return total / count

            with torch.no_grad():
                s0 = value(xi, fixed).cpu() if fixed else torch.full((1,), float("nan"))
            area = float(mi.sum()) if mi is not None else float(xi.shape[-2] * xi.shape[-1])
            if not fixed or area == 0:
                logger.warning("image %d: no usable face patch (no face, or mask empty or too small); left unchanged", i)
                yi = xi.clone()
            else:
                step = step_size * (math.sqrt(area) / p if step_per == "patch" else 1.0)

                def objective(t: torch.Tensor, plan=plan, fixed=fixed) -> torch.Tensor:
                    groups = plan.groups(shifted=True) if jitter else fixed
                    if not groups:  # an offset where no patch is mostly face: no push this step
                        return t.sum() * 0.0
                    return sign * value(t, groups)

                yi = l2_pgd(objective, xi, steps=steps, step_size=step, linf=max_change, pixel_range=255.0,
                            mask=mi, grad_transform=shape)
            with torch.no_grad():
                s1 = value(yi, fixed).cpu() if fixed else torch.full((1,), float("nan"))
            outs.append(yi)
            raw_before.append(s0), raw_after.append(s1)
    out = restore(torch.cat(outs))
    all_masks = None if any(mk is None for mk in masks) else torch.cat([mk.cpu() for mk in masks])
    if scorer:
        batched = images.ndim == 4
        before = _ratios_of(model, images, batched)
        after = _ratios_of(model, out, batched) if score_after else torch.full_like(before, float("nan"))
    else:
        before = _masked_ratios(net, x, all_masks, n_patches, min_foreground, chunk_size)
        after = _masked_ratios(net, torch.cat([o.cpu() for o in outs]), all_masks, n_patches, min_foreground,
                               chunk_size)
    return EnhanceResult(images=out, before=before, after=after, raw_before=torch.cat(raw_before),
                         raw_after=torch.cat(raw_after), mask=all_masks)


def _masked_ratios(net: nn.Module, x: torch.Tensor, m: torch.Tensor | None, n_patches: int, min_foreground: float,
                   chunk_size: int) -> torch.Tensor:
    """The scorer's usual ratio (median of clipped patch scores) of each masked image, ``[B]``."""
    device = next(net.parameters()).device
    out = []
    with torch.no_grad(), eval_mode(net):
        for i in range(x.shape[0]):
            mi = None if m is None else m[i:i + 1].to(device)
            out.append(effective_resolution_ratio(net, x[i:i + 1].to(device), mi, n_patches=n_patches,
                                                  min_foreground=min_foreground, reduce="median", clip=True,
                                                  chunk_size=chunk_size).cpu())
    return torch.cat(out)


def enhance_file(in_path: str | os.PathLike, out_path: str | os.PathLike, model: nn.Module | None = None,
                 **kwargs) -> EnhanceResult:
    """Enhance one image file and write the result (PNG keeps the fine detail; JPEG is saved at
    quality 95 without chroma subsampling). ``model`` defaults to the bundled EffRes; ``kwargs``
    go to :func:`enhance`. With an ``EffRes``, ``after`` is the score of the written file (what
    ``effres score OUT`` prints: JPEG loses part of the change)."""
    from PIL import Image

    from ..measure.imageio import load_image

    if model is None:
        from ..measure.scorer import EffRes

        model = EffRes.from_pretrained()
    rescore = _scores_images(model)  # then the written file is scored below, not the array
    result = enhance(model, load_image(in_path), **{**kwargs, "score_after": not rescore})
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_kw = {"quality": 95, "subsampling": 0} if out_path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(result.images).save(out_path, **save_kw)
    if rescore:  # score what was written (JPEG and WebP are lossy), not what was meant
        written = model.score(out_path)
        result.after = torch.tensor([float("nan") if written.ratio is None else written.ratio])
    return result


class _CallableModule(types.ModuleType):
    """``effres_core.gradient.enhance`` names both this module and its main function (a lazy export of the
    package). Once the module is imported, Python binds the package attribute to the module, so
    ``from effres_core.gradient import enhance`` may hand out the module; calling it still enhances."""

    def __call__(self, *args, **kwargs) -> EnhanceResult:
        return enhance(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
