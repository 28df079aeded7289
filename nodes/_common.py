"""Format glue between ComfyUI's tensors and effres_core, shared by the nodes. No ComfyUI import.

ComfyUI's IMAGE is ``[B, H, W, C]`` float in [0, 1] (C is usually 3, sometimes 1 or 4), its MASK
``[B, H, W]``. ComfyUI runs every node under ``torch.inference_mode()``, so anything that needs
autograd has to copy its inputs and weights with inference mode switched off first.
"""

from __future__ import annotations

import copy
import json
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..effres_core.measure.batch import BatchScorer
from ..effres_core.measure.scorer import EffRes, ScoreResult

#: Score outputs use this for "no usable face" so that FLOAT/INT sockets always carry a number.
NOT_SCORED = -1.0


# ---- IMAGE / MASK layouts ----------------------------------------------------------------------
try:  # stops one output branch of the graph; ComfyUI's executor knows this class
    from comfy_execution.graph_utils import ExecutionBlocker
except ImportError:  # pragma: no cover - only without ComfyUI
    ExecutionBlocker = None


def block_branch(message: str | None):
    """An output that makes ComfyUI skip the nodes behind it (``message``: shown, ``None``: silent)."""
    return ExecutionBlocker(message) if ExecutionBlocker is not None else None


def check_image(images: torch.Tensor) -> torch.Tensor:
    """Validate a ComfyUI IMAGE ``[B, H, W, C]`` (C in 1..4; a lone ``[H, W, C]`` gets a batch axis)."""
    if not torch.is_tensor(images):
        raise TypeError(f"expected an IMAGE tensor, got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected an IMAGE [B, H, W, C] with 1-4 channels, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"expected a float IMAGE in [0, 1], got dtype {images.dtype}")
    return images


def image_to_rgb(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, H, W, C]`` -> (``[B, 3, H, W]`` RGB, alpha ``[B, 1, H, W]`` or None).

    Grayscale is repeated to three channels; alpha is split off (the scorer sees colour only and
    :func:`rgb_to_image` puts the alpha back so a node's output keeps its input's layout).
    """
    images = check_image(images)
    c = images.shape[-1]
    x = images.movedim(-1, 1)
    alpha = x[:, c - 1:c] if c in (2, 4) else None
    colour = x[:, :c - 1] if alpha is not None else x
    if colour.shape[1] == 1:
        colour = colour.expand(-1, 3, -1, -1)
    return colour, alpha


def rgb_to_image(rgb: torch.Tensor, alpha: torch.Tensor | None, channels: int) -> torch.Tensor:
    """Inverse of :func:`image_to_rgb`: back to ``[B, H, W, channels]``."""
    colour = rgb.mean(dim=1, keepdim=True) if channels in (1, 2) else rgb
    out = torch.cat([colour, alpha.to(colour)], dim=1) if alpha is not None else colour
    return out.movedim(1, -1).contiguous()


def check_mask(mask: torch.Tensor | None, batch: int, height: int, width: int) -> torch.Tensor | None:
    """A ComfyUI MASK (``[B, H, W]`` or ``[H, W]``; a batch of 1 is broadcast) -> ``[batch, H, W]``."""
    if mask is None:
        return None
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3 or tuple(mask.shape[-2:]) != (height, width):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the images ({height}x{width})")
    if mask.shape[0] == 1 and batch != 1:
        mask = mask.expand(batch, -1, -1)
    if mask.shape[0] != batch:
        raise ValueError(f"mask batch {mask.shape[0]} does not match the image batch {batch}")
    return mask.float().clamp(0, 1)


# ---- autograd under ComfyUI's inference mode ---------------------------------------------------
def autograd_ready(module: nn.Module) -> nn.Module:
    """``module`` itself, or a private copy when any of its tensors is an inference tensor.

    Weights loaded inside ComfyUI (which executes under ``torch.inference_mode()``) are inference
    tensors; autograd refuses to save them for backward. A copy made with inference mode off holds
    ordinary tensors.
    """
    tensors = list(module.parameters()) + list(module.buffers())
    if not any(t.is_inference() for t in tensors):
        return module
    with torch.inference_mode(False):
        return copy.deepcopy(module)


def grad_input(x: torch.Tensor) -> torch.Tensor:
    """An ordinary (non-inference) copy of ``x``; call with inference mode off."""
    return x.detach().clone()


# ---- scoring -----------------------------------------------------------------------------------
def score_images(model: EffRes, images: torch.Tensor) -> list[ScoreResult]:
    """Score every image of a ComfyUI batch on its own, so a bad image (NaN, no face) only marks
    its own result instead of failing the batch."""
    images = check_image(images)
    if images.shape[-1] == 2:  # gray + alpha: the core reads 1, 3 or 4 channels, so make it RGBA
        images = torch.cat([images[..., :1].expand(-1, -1, -1, 3), images[..., 1:]], dim=-1)
    # Pooled forward passes across the batch (what helps on a GPU); per-image errors as before.
    return BatchScorer(model, accelerate=False).score([images[i:i + 1] for i in range(images.shape[0])])


def ratio_of(result: ScoreResult) -> float:
    return float(result.ratio) if result.ratio is not None else NOT_SCORED


def effective_height(result: ScoreResult) -> int:
    """Effective resolution in pixels: the ratio times the image height (the paper's measure)."""
    return int(result.effective_resolution[0]) if result.effective_resolution else int(NOT_SCORED)


def summary_json(results: Sequence[ScoreResult]) -> str:
    """A JSON list with one entry per image (index, size, ratio, effective resolution, faces, reason)."""
    rows = []
    for i, r in enumerate(results):
        row = {"index": i, "image_size": list(r.image_size) if r.image_size else None}
        row.update(r.to_dict())
        row.pop("path", None)
        rows.append(row)
    return json.dumps(rows, allow_nan=False, default=_json_default)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def describe(results: Sequence[ScoreResult], extra: Sequence[str] | None = None) -> str:
    """One line per image, for showing on the node."""
    if not results:
        return "empty batch: nothing to score"
    lines = []
    for i, r in enumerate(results):
        tag = f"#{i}" + (f" {extra[i]}" if extra else "")
        if r.ratio is not None and r.effective_resolution:
            h, w = r.effective_resolution
            faces = len([f for f in r.faces if f.ratio is not None])
            lines.append(f"{tag}: ratio {r.ratio:.3f}, effective {h}x{w} px ({faces} face{'s' * (faces != 1)})")
        else:
            lines.append(f"{tag}: not scored: {r.error or r.reason or 'unknown reason'}")
    return "\n".join(lines)


def heatmap_image(results: Sequence[ScoreResult], images: torch.Tensor) -> torch.Tensor:
    """The patch scores as a colour map over a dimmed copy of each image, ``[B, H, W, 3]``.

    Viridis colours: dark purple = ratio 0 (blurry), yellow = ratio 1 (sharp). Pixels no kept patch
    covers show the dimmed image only.
    """
    import cv2

    images = check_image(images)
    rgb, _ = image_to_rgb(images)
    out = []
    for i, r in enumerate(results):
        base = torch.nan_to_num(rgb[i].float().cpu(), nan=0.0).clamp(0, 1).permute(1, 2, 0).numpy() * 0.35
        heat = r.heatmap
        if heat is not None and heat.shape == base.shape[:2] and np.isfinite(heat).any():
            covered = np.isfinite(heat)
            level = (np.clip(np.nan_to_num(heat, nan=0.0), 0, 1) * 255 + 0.5).astype(np.uint8)
            colour = cv2.applyColorMap(level, cv2.COLORMAP_VIRIDIS)[..., ::-1].astype(np.float32) / 255.0
            base = np.where(covered[..., None], base + 0.65 * colour, base)
        out.append(torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32)))
    if not out:
        return torch.zeros(0, images.shape[1], images.shape[2], 3)
    return torch.stack(out).clamp(0, 1)


def mask_batch(results: Sequence[ScoreResult], height: int, width: int) -> torch.Tensor:
    """The scorer's face masks as a ComfyUI MASK ``[B, H, W]`` (zeros where scoring failed)."""
    masks = [torch.from_numpy(np.asarray(r.mask, dtype=np.float32)) if r.mask is not None
             and tuple(r.mask.shape) == (height, width) else torch.zeros(height, width) for r in results]
    return torch.stack(masks) if masks else torch.zeros(0, height, width)
