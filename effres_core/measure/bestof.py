"""Best of a batch: which image is sharpest, and every face cut out at one size for a look.

Works on :class:`~effres_core.measure.scorer.ScoreResult` lists, so the ComfyUI best-of node and
scripts share one rule.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .scorer import ScoreResult

RANK_BY = ("image ratio", "worst face", "best face")


def rank_value(result: ScoreResult, rank_by: str = "image ratio") -> float | None:
    """The number an image is ranked by: its ratio (all faces' patches pooled), or the ratio of its
    softest or sharpest face; None when it has no scored face."""
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    if rank_by == "image ratio":
        return result.ratio
    ratios = [f.ratio for f in result.faces if f.ratio is not None]
    if not ratios:
        return None
    return min(ratios) if rank_by == "worst face" else max(ratios)


def best_index(results: Sequence[ScoreResult], rank_by: str = "image ratio") -> int | None:
    """Index of the best image (the first of equals), or None when no image has a scored face.

    Example:
        >>> best_index([ScoreResult(ratio=0.3), ScoreResult(), ScoreResult(ratio=0.7)])
        2
    """
    values = [rank_value(r, rank_by) for r in results]
    scored = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    return max(scored, key=lambda t: (t[0], -t[1]))[1] if scored else None


def square_box(box: Sequence[int], margin: float = 0.25) -> tuple[int, int, int, int]:
    """A square around a face box: its longer side plus ``margin`` of it on each side, same centre
    (may reach beyond the image)."""
    x0, y0, x1, y1 = box
    side = max(1, round(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    return left, top, left + side, top + side


def face_crop(image: torch.Tensor, box: Sequence[int], size: int = 256, margin: float = 0.25) -> torch.Tensor:
    """A square crop around a face of a ``[C, H, W]`` image, resized to ``size`` x ``size``
    (anti-aliased); parts beyond the image are black. ``[C, size, size]``."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    c, h, w = image.shape
    x0, y0, x1, y1 = square_box(box, margin)
    canvas = image.new_zeros(c, y1 - y0, x1 - x0)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if sx1 > sx0 and sy1 > sy0:
        canvas[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[:, sy0:sy1, sx0:sx1]
    out = F.interpolate(canvas[None].float(), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=canvas.shape[-1] > size)
    return out[0].clamp(0, 1).to(image.dtype)


def face_crops(images: torch.Tensor, results: Sequence[ScoreResult], size: int = 256, margin: float = 0.25):
    """Every detected face of a ``[B, C, H, W]`` batch, in image order then face order:
    (``[N, C, size, size]`` crops, their ratios (None where not scored), ``(image, face)`` indices)."""
    crops, ratios, where = [], [], []
    for i, r in enumerate(results):
        for k, face in enumerate(r.faces):
            crops.append(face_crop(images[i], face.box, size, margin))
            ratios.append(face.ratio)
            where.append((i, k))
    stacked = torch.stack(crops) if crops else images.new_zeros(0, images.shape[1], size, size)
    return stacked, ratios, where


def describe_faces(results: Sequence[ScoreResult], best: int | None, rank_by: str = "image ratio") -> str:
    """Text listing every face of every image, and which image is best."""
    lines = [f"best: #{best} ({rank_by} {rank_value(results[best], rank_by):.3f})" if best is not None
             else "best: none (no image has a scored face)"]
    for i, r in enumerate(results):
        if not r.faces:
            lines.append(f"#{i}: no face ({r.error or r.reason or 'none found'})")
        for k, f in enumerate(r.faces):
            x0, y0, x1, y1 = f.box
            score = f"ratio {f.ratio:.3f}" if f.ratio is not None else f"not scored ({f.reason})"
            lines.append(f"#{i} face {k}: {x1 - x0}x{y1 - y0} px at ({x0}, {y0}), {score}")
    return "\n".join(lines)
