"""Sharpness guidance for diffusion sampling: the one place for the math.

Given the sampler's estimate of the clean sample ``x0`` (in latent space), a differentiable
decoder (latents -> images in [0, 1]) and the scorer, :func:`sharpness_gradient` returns the
gradient of the faces' sharpness score with respect to ``x0``. Samplers then move their latents a
little along it at some steps (diffusers: :mod:`effres_core.integrations.diffusers`; ComfyUI nodes
call the same function with their own decode function).

Why the gradient is taken at ``x0`` and not through the denoiser: backpropagating through the
UNet costs a second, larger backward pass per step; the decoder's Jacobian alone already says
which latent change makes the decoded face read sharper (the "manifold preserving" shortcut of
training-free guidance). The price is that the step is only first-order accurate; small scales
over several steps work better than one large one.

Memory: the backward pass through the decoder holds its activations for the decoded size, which
dominates everything else (see ``docs/gradient-tools.md``). ``max_decode_size`` bounds it by
decoding only a window (or a downscaled copy) of the latents.

Where the faces are: :func:`face_windows` turns face boxes (found on a decode with
:func:`detect_faces`, or read off a mask with :func:`mask_boxes`) into latent windows around each
face, and :func:`sharpness_gradient_windows` decodes and backpropagates through those windows
only, one at a time, so cost follows the faces' size rather than the image's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .losses import eval_mode, sharpness_score
from ..measure.faces import FaceBox
from ..model.net import scoring_net

NORMALIZATIONS = ("rms", "l2", "none")
CAP_MODES = ("crop", "random_crop", "resize")


def normalize_gradient(grad: torch.Tensor, mode: str = "rms", eps: float = 1e-12) -> torch.Tensor:
    """Per-sample normalisation of ``[B, ...]`` gradients, with a NaN/inf guard.

    ``"rms"``: unit root-mean-square per sample (a step of ``scale`` moves each latent value by about
    ``scale``, whatever the resolution); ``"l2"``: unit L2 norm per sample; ``"none"``: unchanged.
    A sample whose gradient holds NaN or inf, or is all zeros, becomes all zeros.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {mode!r}")
    flat = grad.reshape(grad.shape[0], -1)
    finite = torch.isfinite(flat).all(dim=1)
    flat = torch.where(finite[:, None], flat, torch.zeros_like(flat))
    if mode == "rms":
        flat = flat / flat.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=eps)
    elif mode == "l2":
        flat = flat / flat.norm(dim=1, keepdim=True).clamp(min=eps)
    return flat.view_as(grad)


def _window(size: int, limit: int, mode: str, generator: torch.Generator | None) -> int:
    """Start offset of a ``limit``-long window in ``size`` (centre, or random for ``random_crop``)."""
    if size <= limit:
        return 0
    if mode == "random_crop":
        return int(torch.randint(0, size - limit + 1, (1,), generator=generator))
    return (size - limit) // 2


def _cap_latents(z: torch.Tensor, max_latent: int | None, mode: str, generator: torch.Generator | None):
    """Crop or shrink latents so their longer side is at most ``max_latent``.

    Returns the capped latents and a function applying the same change to an image-space map
    (a mask) given the image-space scale factor.
    """
    h, w = z.shape[-2:]
    if max_latent is None or max(h, w) <= max_latent:
        return z, lambda m, factor: m
    if mode == "resize":
        s = max_latent / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        # A smaller decode of the whole frame; gradients flow back through the interpolation.
        return (F.interpolate(z, size=size, mode="bilinear", align_corners=False, antialias=True),
                lambda m, factor: F.interpolate(m, size=(size[0] * factor, size[1] * factor), mode="bilinear",
                                                align_corners=False, antialias=True))
    hc, wc = min(h, max_latent), min(w, max_latent)
    top, left = _window(h, hc, mode, generator), _window(w, wc, mode, generator)
    # A window at native scale: the scorer judges detail per pixel, so cropping keeps its meaning.
    return (z[..., top:top + hc, left:left + wc],
            lambda m, factor: m[..., top * factor:(top + hc) * factor, left * factor:(left + wc) * factor])


def _decode_checked(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """``decode(z)``, refused with a clear message unless it is ``[B, 3, H, W]`` images."""
    images = decode(z)
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"decode must return [B, 3, H, W] images in [0, 1], got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    return images


def sharpness_gradient_with_score(x0: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor], net: nn.Module,
                                  mask: torch.Tensor | None = None, *, max_decode_size: int | None = None,
                                  cap_mode: str = "crop", latent_scale: int = 8, n_patches: int = 25,
                                  min_foreground: float = 0.9,
                                  chunk_size: int = 16, normalize: str = "rms", clip: str = "none",
                                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sharpness_gradient` that also returns the score ``[B]`` of the decoded ``x0`` (NaN where
    no patch was usable); the score is the mean raw patch score, before the step."""
    if not torch.is_tensor(x0) or x0.ndim != 4:
        raise ValueError(f"expected latents [B, C, h, w], got {getattr(x0, 'shape', type(x0).__name__)}")
    if cap_mode not in CAP_MODES:
        raise ValueError(f"cap_mode must be one of {CAP_MODES}, got {cap_mode!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    net = scoring_net(net)  # an EffRes or a bare EffResNet
    param = next(net.parameters())
    # Samplers run under no_grad or inference_mode: switch both off here only, on a clone.
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(net):
        z = x0.detach().clone().requires_grad_(True)
        max_latent = None
        if max_decode_size is not None:
            if max_decode_size < 1:
                raise ValueError(f"max_decode_size must be positive, got {max_decode_size}")
            max_latent = max(1, max_decode_size // latent_scale)
        zc, cap_map = _cap_latents(z, max_latent, cap_mode, generator)
        images = _decode_checked(decode, zc)
        factor = max(1, round(images.shape[-2] / zc.shape[-2]))
        images = images.to(param.device, param.dtype)
        m = None
        if mask is not None:
            m = mask.detach().to(param.device, param.dtype).clone()  # an inference tensor cannot join autograd
            m = m.unsqueeze(1) if m.ndim == 3 else m
            if m.ndim != 4 or m.shape[1] != 1 or m.shape[0] not in (1, images.shape[0]):
                raise ValueError(f"mask must be [B, H, W] or [B, 1, H, W], got {tuple(mask.shape)}")
            full = (z.shape[-2] * factor, z.shape[-1] * factor)
            if tuple(m.shape[-2:]) != full:  # masks may come at any size: bring them to the full decode
                m = F.interpolate(m, size=full, mode="bilinear", align_corners=False)
            m = cap_map(m, factor).expand(images.shape[0], 1, *images.shape[-2:])
            # Gradient only through masked pixels; values are unchanged.
            images = images * m + images.detach() * (1 - m)
        score = sharpness_score(net, images, None if m is None else m[:, 0], n_patches=n_patches,
                                min_foreground=min_foreground, chunk_size=chunk_size, clip=clip)
        grad, = torch.autograd.grad(torch.nan_to_num(score, nan=0.0).sum(), z, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(z)
    grad = normalize_gradient(grad.detach().float(), normalize).to(x0.dtype)
    return grad, score.detach()


def sharpness_gradient(x0: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor], net: nn.Module,
                       mask: torch.Tensor | None = None, *, max_decode_size: int | None = None,
                       cap_mode: str = "crop", latent_scale: int = 8, n_patches: int = 25, min_foreground: float = 0.9,
                       chunk_size: int = 16, normalize: str = "rms", clip: str = "none",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Gradient of the decoded faces' sharpness with respect to the latent clean-sample estimate.

    Args:
        x0: ``[B, C, h, w]`` latents (the sampler's predicted clean sample); not modified.
        decode: differentiable ``latents -> [B, 3, H, W]`` images in [0, 1] (e.g. a VAE decode
            with its scaling undone and ``/2 + 0.5``).
        net: the scorer, an :class:`~effres_core.model.net.EffResNet` or an ``EffRes``.
        mask: optional ``[B, H, W]`` face mask in image coordinates (resized to the decoded size if
            it differs); only masked pixels pass gradient and only mostly-masked patches count.
        max_decode_size: optional cap on the decoded side in pixels: larger latents are cropped to a
            window (``cap_mode="crop"``: centre; ``"random_crop"``: a random window per call, so
            several steps cover the frame) or shrunk (``"resize"``). Pixels outside a crop get zero
            gradient.
        latent_scale: image pixels per latent pixel (8 for Stable Diffusion VAEs), used by the cap.
        n_patches, min_foreground, chunk_size: scoring grid and memory knob (see
            :func:`~effres_core.gradient.losses.sharpness_score`).
        normalize: ``"rms"`` (default, unit RMS per sample), ``"l2"`` or ``"none"``.
        clip: ``"none"`` or ``"soft"`` clipping of patch scores.

    Returns:
        ``[B, C, h, w]`` gradient in ``x0``'s dtype (an ascent direction), zeros for samples whose
        gradient is not finite or that have no usable patch. Works when the caller is inside
        ``torch.no_grad()`` or ``torch.inference_mode()``; the caller's grad mode is left as it was.

    Example:
        >>> from effres_core.model.net import EffResNet
        >>> net = EffResNet(patch_size=32, width=0.25).eval()
        >>> decode = lambda z: torch.sigmoid(F.interpolate(z[:, :3], scale_factor=8))
        >>> with torch.no_grad():
        ...     g = sharpness_gradient(torch.randn(1, 4, 8, 8), decode, net)
        >>> g.shape, torch.is_grad_enabled()
        (torch.Size([1, 4, 8, 8]), True)
    """
    return sharpness_gradient_with_score(x0, decode, net, mask, max_decode_size=max_decode_size, cap_mode=cap_mode,
                                         latent_scale=latent_scale,
                                         n_patches=n_patches, min_foreground=min_foreground, chunk_size=chunk_size,
                                         normalize=normalize, clip=clip, generator=generator)[0]


@dataclass(frozen=True)
class GuidanceWindow:
    """Which sampling steps get guidance: those whose progress ``step / num_steps`` lies in
    ``[start, end)`` (``end=1`` includes the last step), every ``every``-th step.

    Example:
        >>> w = GuidanceWindow(start=0.5, end=1.0)
        >>> [i for i in range(10) if w.contains(i, 10)]
        [5, 6, 7, 8, 9]
    """

    start: float = 0.0
    end: float = 1.0
    every: int = 1

    def __post_init__(self):
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"need 0 <= start <= end <= 1, got start={self.start}, end={self.end}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")

    def contains(self, step_index: int, num_steps: int) -> bool:
        if num_steps < 1 or not 0 <= step_index < num_steps:
            return False
        progress = step_index / num_steps
        inside = self.start <= progress and (progress < self.end or self.end >= 1.0)
        return inside and step_index % self.every == 0


# ---- face windows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceWindow:
    """A window of sample ``batch``'s latents, rows ``top:top + height`` and columns
    ``left:left + width``, and the face boxes inside it (image pixels, full-frame coordinates).
    No faces means "judge the whole window" (the whole-image fallback)."""

    batch: int
    top: int
    left: int
    height: int
    width: int
    faces: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def _span(lo: float, hi: float, size: int, min_len: int, max_len: int | None) -> tuple[int, int]:
    """``[start, stop)`` latent cells covering ``[lo, hi)``, at least ``min_len`` and at most
    ``max_len`` long (grown or cut around the centre), inside ``[0, size)``."""
    start, stop = max(0, math.floor(lo)), min(size, math.ceil(hi))
    length = stop - start
    target = max(length, min(min_len, size))
    if max_len is not None:
        target = min(target, max_len)
    if target != length:
        centre = (lo + hi) / 2
        start = int(round(centre - target / 2))
        start = min(max(0, start), size - target)
        stop = start + target
    return start, stop


def face_windows(boxes: Sequence[FaceBox | Sequence[float]], latent_size: tuple[int, int], *, batch: int = 0,
                 latent_scale: int = 8, margin: float = 0.25, max_latent: int | None = None,
                 min_latent: int = 1) -> list[FaceWindow]:
    """Latent windows around face boxes (image pixels): each box grown by ``margin`` times its
    size on every side, at least ``min_latent`` and at most ``max_latent`` cells per side (cut
    around the face's centre), inside the latents. Overlapping windows are merged when the merged
    window still fits ``max_latent``.

    Example:
        >>> [(w.top, w.left, w.height, w.width) for w in face_windows([(64, 64, 128, 128)], (64, 64))]
        [(6, 6, 12, 12)]
    """
    h, w = latent_size
    out: list[FaceWindow] = []
    for box in boxes:
        x0, y0, x1, y1 = (box.x0, box.y0, box.x1, box.y1) if isinstance(box, FaceBox) else box
        mx, my = (x1 - x0) * margin, (y1 - y0) * margin
        top, bottom = _span((y0 - my) / latent_scale, (y1 + my) / latent_scale, h, min_latent, max_latent)
        left, right = _span((x0 - mx) / latent_scale, (x1 + mx) / latent_scale, w, min_latent, max_latent)
        out.append(FaceWindow(batch, top, left, bottom - top, right - left, (tuple(int(v) for v in (x0, y0, x1, y1)),)))
    merged = True
    while merged:  # merge overlapping windows whose union still fits the cap
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a.top < b.top + b.height and b.top < a.top + a.height and a.left < b.left + b.width \
                        and b.left < a.left + a.width:
                    top, left = min(a.top, b.top), min(a.left, b.left)
                    bottom, right = max(a.top + a.height, b.top + b.height), max(a.left + a.width, b.left + b.width)
                    if max_latent is None or max(bottom - top, right - left) <= max_latent:
                        out[i] = FaceWindow(a.batch, top, left, bottom - top, right - left, a.faces + b.faces)
                        del out[j]
                        merged = True
                        break
            if merged:
                break
    return out


def centre_window(latent_size: tuple[int, int], *, batch: int = 0, max_latent: int | None = None) -> FaceWindow:
    """The whole latent frame, or its centred ``max_latent`` window (no face boxes)."""
    h, w = latent_size
    hc, wc = (h, w) if max_latent is None else (min(h, max_latent), min(w, max_latent))
    return FaceWindow(batch, (h - hc) // 2, (w - wc) // 2, hc, wc)


def detect_faces(images: torch.Tensor, detector: Callable[[np.ndarray], list[FaceBox]]) -> list[list[FaceBox]]:
    """Face boxes per image of a ``[B, 3, H, W]`` batch in [0, 1] (no gradient), with any
    :func:`~effres_core.measure.faces.get_detector` detector."""
    rgb = (torch.nan_to_num(images.detach().float(), nan=0.0).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return [list(detector(np.ascontiguousarray(x.permute(1, 2, 0).cpu().numpy()))) for x in rgb]


def mask_boxes(mask: torch.Tensor, threshold: float = 0.5) -> list[list[FaceBox]]:
    """The bounding boxes of the connected regions of a ``[B, H, W]`` mask, per image, largest first."""
    import cv2

    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    out = []
    for m in (mask.detach().float().cpu().numpy() > threshold):
        count, _, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        boxes = [FaceBox(int(x), int(y), int(x + bw), int(y + bh)) for x, y, bw, bh, _ in stats[1:count]]
        out.append(sorted(boxes, key=lambda b: b.width * b.height, reverse=True))
    return out


def sharpness_gradient_windows(x0: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor], net: nn.Module,
                               windows: Sequence[FaceWindow], mask: torch.Tensor | None = None, *,
                               n_patches: int = 25, min_foreground: float = 0.9, chunk_size: int = 16,
                               normalize: str = "rms", clip: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sharpness_gradient_with_score` through latent windows only: each window is decoded
    on its own and judged on its faces (its face boxes as the mask, or ``mask`` cut to the window
    when given; a window without faces is judged whole), its gradient added to its part of the
    latents. One window at a time, so the peak memory is that of the largest window. Latents
    outside every window get exactly zero. Returns (``[B, C, h, w]`` gradient, ``[B]`` mean score of
    each sample's windows, NaN where none had a usable patch).
    """
    if not torch.is_tensor(x0) or x0.ndim != 4:
        raise ValueError(f"expected latents [B, C, h, w], got {getattr(x0, 'shape', type(x0).__name__)}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    b, _, h, w = x0.shape
    for win in windows:
        if not (0 <= win.batch < b and win.height > 0 and win.width > 0 and win.top >= 0 and win.left >= 0
                and win.top + win.height <= h and win.left + win.width <= w):
            raise ValueError(f"window {win} does not fit latents of shape {tuple(x0.shape)}")
    net = scoring_net(net)
    param = next(net.parameters())
    scores: list[list[torch.Tensor]] = [[] for _ in range(b)]
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(net):
        grad = torch.zeros(x0.shape, dtype=torch.float32, device=x0.device)  # an ordinary tensor
        for win in windows:
            rows, cols = win.slices
            z = x0[win.batch:win.batch + 1, :, rows, cols].detach().clone().requires_grad_(True)
            images = _decode_checked(decode, z)
            factor = max(1, round(images.shape[-2] / z.shape[-2]))
            images = images.to(param.device, param.dtype)
            m = _window_mask(win, mask, factor, (h, w), images.shape[-2:], param)
            if m is not None:
                images = images * m + images.detach() * (1 - m)  # gradient only through the faces
            score = sharpness_score(net, images, None if m is None else m[:, 0], n_patches=n_patches,
                                    min_foreground=min_foreground, chunk_size=chunk_size, clip=clip)
            g, = torch.autograd.grad(torch.nan_to_num(score, nan=0.0).sum(), z, allow_unused=True)
            if g is not None:
                grad[win.batch, :, rows, cols] += g[0].float()
            scores[win.batch].append(score.detach()[0].float())
    grad = normalize_gradient(grad, normalize).to(x0.dtype)
    nan = torch.tensor(float("nan"))
    per_sample = torch.stack([torch.stack(s).cpu().nanmean() if s else nan for s in scores])
    return grad, per_sample


def _window_mask(win: FaceWindow, mask: torch.Tensor | None, factor: int, latent_size: tuple[int, int],
                 decoded_size, param: torch.Tensor) -> torch.Tensor | None:
    """The scoring mask of a window's decode ``[1, 1, H, W]``: ``mask`` cut to the window, else its
    face boxes, else None (judge the whole window)."""
    H, W = int(decoded_size[0]), int(decoded_size[1])
    top, left = win.top * factor, win.left * factor
    if mask is not None:
        m = mask.detach().to(param.device, param.dtype).clone()
        m = m.unsqueeze(1) if m.ndim == 3 else m
        if m.ndim != 4 or m.shape[1] != 1:
            raise ValueError(f"mask must be [B, H, W] or [B, 1, H, W], got {tuple(mask.shape)}")
        m = m[win.batch:win.batch + 1] if m.shape[0] > 1 else m
        full = (latent_size[0] * factor, latent_size[1] * factor)
        if tuple(m.shape[-2:]) != full:
            m = F.interpolate(m, size=full, mode="bilinear", align_corners=False)
        return m[..., top:top + H, left:left + W]
    if not win.faces:
        return None
    m = torch.zeros(1, 1, H, W, device=param.device, dtype=param.dtype)
    for x0, y0, x1, y1 in win.faces:
        m[..., max(0, y0 - top):max(0, y1 - top), max(0, x0 - left):max(0, x1 - left)] = 1.0
    return m
