"""Patch scores drawn over the face: a colour map, a small colour bar, and the face boxes.

Pure numpy + Pillow (no matplotlib): the scorer's ``heatmap`` (``[H, W]`` float, NaN where no
patch counted) is coloured and alpha-blended onto the image; pixels without a score keep the
original image, so the viewer sees which parts were scored at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .scorer import ScoreResult

#: Viridis at five stops (perceptually even, readable for colour-blind viewers):
#: dark purple = low effective resolution, yellow = sharp.
_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COLOURS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def colorize(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped; NaN -> 0) to RGB: ``[...]`` float -> ``[..., 3]`` uint8."""
    v = np.nan_to_num(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0), nan=0.0)
    rgb = np.stack([np.interp(v, _STOPS, _COLOURS[:, c]) for c in range(3)], axis=-1)
    return (rgb + 0.5).astype(np.uint8)


def _check(rgb: np.ndarray, heatmap: np.ndarray, alpha: float) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {type(rgb).__name__} with shape {shape}")
    heatmap = np.asarray(heatmap)
    if heatmap.shape != rgb.shape[:2]:
        raise ValueError(f"heatmap shape {heatmap.shape} does not match the image {rgb.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def overlay_heatmap(rgb: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, legend: bool = True) -> np.ndarray:
    """Blend coloured patch scores onto an image.

    Args:
        rgb: ``[H, W, 3]`` uint8 image.
        heatmap: ``[H, W]`` float scores in [0, 1]; NaN where nothing was scored (left untouched).
        alpha: weight of the colour where there is a score.
        legend: draw a small 0..1 colour bar in the bottom-right corner (when the image is big enough).

    Returns:
        ``[H, W, 3]`` uint8 image (a new array).

    Example:
        >>> rgb = np.zeros((64, 64, 3), np.uint8)
        >>> heat = np.full((64, 64), np.nan, np.float32); heat[16:48, 16:48] = 0.7
        >>> overlay_heatmap(rgb, heat).shape
        (64, 64, 3)
    """
    _check(rgb, heatmap, alpha)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    scored = ~np.isnan(heatmap)
    out = rgb.astype(np.float32)
    colour = colorize(heatmap).astype(np.float32)
    out[scored] = (1.0 - alpha) * out[scored] + alpha * colour[scored]
    out = (out + 0.5).astype(np.uint8)
    if legend:
        out = _draw_legend(out)
    return out


def _font(image_side: int):
    """A font readable on the image: Pillow's scalable default (Pillow >= 10.1), else its bitmap one."""
    from PIL import ImageFont

    size = max(11, image_side // 45)
    try:
        return ImageFont.load_default(size=size), size
    except TypeError:  # older Pillow: fixed 11 px bitmap font
        return ImageFont.load_default(), 11


def _draw_legend(rgb: np.ndarray) -> np.ndarray:
    """A horizontal colour bar with ``0`` and ``1`` labels; skipped on images too small to hold it."""
    h, w = rgb.shape[:2]
    if w < 96 or h < 48:
        return rgb
    from PIL import Image, ImageDraw

    font, text_h = _font(min(h, w))
    bar_w, bar_h = max(48, w // 4), max(6, h // 60)
    pad = max(4, w // 100)
    x0, y0 = w - bar_w - 2 * pad, h - bar_h - text_h - 3 * pad
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    draw.rectangle([x0, y0, w - 1, h - 1], fill=(0, 0, 0))  # backdrop so the labels read on any image
    ramp = colorize(np.linspace(0.0, 1.0, bar_w))[None].repeat(bar_h, axis=0)
    img.paste(Image.fromarray(ramp), (x0 + pad, y0 + pad))
    label_y = y0 + 2 * pad + bar_h
    draw.text((x0 + pad, label_y), "0", fill=(255, 255, 255), font=font)
    draw.text((x0 + pad + bar_w - draw.textlength("1", font=font), label_y), "1", fill=(255, 255, 255), font=font)
    return np.asarray(img)


def render_result(result: "ScoreResult", rgb: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap overlay of a :class:`~effres_core.measure.scorer.ScoreResult`, with its face boxes
    and per-face ratios drawn on: ``[H, W, 3]`` uint8."""
    heatmap = result.heatmap
    if heatmap is None:  # nothing was scored: still show the image (and the boxes, if any)
        heatmap = np.full(rgb.shape[:2], np.nan, dtype=np.float32)
    out = overlay_heatmap(rgb, heatmap, alpha)
    if not result.faces:
        return out
    from PIL import Image, ImageDraw

    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    line = max(1, min(rgb.shape[:2]) // 250)
    font, _ = _font(min(rgb.shape[:2]))
    for face in result.faces:
        x0, y0, x1, y1 = face.box
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(255, 255, 255), width=line)
        label = f"{face.ratio:.2f}" if face.ratio is not None else "n/a"
        draw.text((x0 + 2 * line, y0 + 2 * line), label, fill=(255, 255, 255), font=font,
                  stroke_width=max(1, line // 2), stroke_fill=(0, 0, 0))
    return np.asarray(img)


def save_heatmap(result: "ScoreResult", rgb: np.ndarray, path: str | os.PathLike, alpha: float = 0.45) -> Path:
    """Write :func:`render_result` as an image file (format from the suffix, e.g. ``.png``); returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_result(result, rgb, alpha)).save(path)
    return path
