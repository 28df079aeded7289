"""A monotone map from the network's raw output to the ratio it means: post-hoc calibration.

The regressor ranks well but is conservative at the top (a sharp face read ~0.78 with the first
default model). :class:`MonotoneMap` is a strictly increasing piecewise-linear curve through
knots ``(x_k, y_k)``, slope 1 below the first knot and a smooth approach to 1 above the last, so
it never creates ties (rankings and SRCC are unchanged) and never reaches 1. :func:`fit_monotone`
fits the knots to (raw score, true ratio) pairs; ``train/calibrate.py`` does it on sets built
from the *training* faces only, so the evaluation's faces stay unseen.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


def monotone_map(v: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Apply the curve through knots ``x`` (increasing) -> ``y`` (increasing, below 1) to ``v``.

    Linear between knots, slope 1 below ``x[0]``, and above ``x[-1]`` the exponential approach
    ``1 - (1 - y[-1]) * exp(-s (v - x[-1]) / (1 - y[-1]))`` with ``s`` the last segment's slope:
    continuous, with a continuous slope there, and strictly increasing everywhere.
    """
    x, y = x.to(v.device, v.dtype), y.to(v.device, v.dtype)
    slopes = (y[1:] - y[:-1]) / (x[1:] - x[:-1])
    idx = (torch.searchsorted(x, v.detach().contiguous()) - 1).clamp(0, len(x) - 2)
    inside = y[idx] + slopes[idx] * (v - x[idx])
    below = y[0] + (v - x[0])
    room = 1 - y[-1]
    above = 1 - room * torch.exp(-slopes[-1] * (v - x[-1]).clamp(min=0) / room)
    return torch.where(v < x[0], below, torch.where(v > x[-1], above, inside))


class MonotoneMap(nn.Module):
    """Module form of :func:`monotone_map`; the knots are buffers that are not saved with the
    weights (the model's ``config.json`` holds them)."""

    def __init__(self, x: Sequence[float], y: Sequence[float]):
        super().__init__()
        x_t, y_t = torch.as_tensor(list(x), dtype=torch.float32), torch.as_tensor(list(y), dtype=torch.float32)
        if x_t.ndim != 1 or x_t.shape != y_t.shape or len(x_t) < 2:
            raise ValueError("calibration needs two lists of at least 2 knots of the same length")
        if not (torch.all(x_t[1:] > x_t[:-1]) and torch.all(y_t[1:] > y_t[:-1])):
            raise ValueError("calibration knots must be strictly increasing in x and in y")
        if not bool(torch.isfinite(x_t).all() and torch.isfinite(y_t).all()) or float(y_t[-1]) >= 1:
            raise ValueError("calibration knots must be finite, with every y below 1")
        self.register_buffer("x", x_t, persistent=False)
        self.register_buffer("y", y_t, persistent=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return monotone_map(v, self.x, self.y)

    def to_config(self) -> dict:
        return {"x": [round(float(a), 6) for a in self.x], "y": [round(float(b), 6) for b in self.y]}


def _pav(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing sequence closest to ``values`` in weighted L2."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values.astype(float), weights.astype(float)):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([[m] * c for m, _, c in blocks])


def fit_monotone(pred: Sequence[float], truth: Sequence[float], bins: int = 12, top: float = 0.995,
                 min_step: float = 1e-3) -> tuple[list[float], list[float]]:
    """Knots of a monotone map from raw scores ``pred`` to true ratios ``truth``.

    The pairs are sorted by ``pred`` and cut into ``bins`` groups of equal count; each gives a knot
    at its median ``pred`` and its median ``truth`` (medians: the targets are absolute errors, and
    a few mis-read images must not drag a knot). The knot values are then made non-decreasing
    (pool-adjacent-violators, weighted by group size), capped at ``top`` and spread by at least
    ``min_step`` so the map is strictly increasing.
    """
    p, t = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    ok = np.isfinite(p) & np.isfinite(t)
    p, t = p[ok], t[ok]
    if len(p) < 2 * bins or bins < 2:
        raise ValueError(f"need at least {2 * bins} finite pairs for {bins} bins, got {len(p)}")
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, bins)
    xs = np.array([np.median(p[g]) for g in groups])
    ys = _pav(np.array([np.median(t[g]) for g in groups]), np.array([len(g) for g in groups], dtype=float))
    ys = np.minimum(ys, top)
    for i in range(len(ys) - 2, -1, -1):  # keep the top, push lower knots down where they tie
        ys[i] = min(ys[i], ys[i + 1] - min_step)
    keep = np.concatenate([[True], np.diff(xs) > 1e-6])
    return xs[keep].tolist(), ys[keep].tolist()
