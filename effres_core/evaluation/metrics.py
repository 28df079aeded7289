"""Ranking metrics of the paper's evaluation: Spearman's rank correlation (SRCC) and pairwise
ranking accuracy (PRA), plus the mean absolute error against known true factors.

Pure numpy, no scipy: ranks with ties averaged, exactly as ``scipy.stats.spearmanr`` does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _as_vector(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values; drop those items first")
    return arr


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_vector(a, "first argument"), _as_vector(b, "second argument")
    if a.shape != b.shape:
        raise ValueError(f"arguments differ in length: {a.shape[0]} vs {b.shape[0]}")
    return a, b


def rankdata(x: ArrayLike) -> np.ndarray:
    """Ranks 1..n of ``x``; tied values share the mean of the ranks they span.

    Example:
        >>> rankdata([10, 20, 20, 5]).tolist()
        [2.0, 3.5, 3.5, 1.0]
    """
    x = _as_vector(x, "x")
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(x.shape[0], dtype=np.float64)
    # Runs of equal values: each run [start, end) gets the average rank (start + end + 1) / 2.
    boundaries = np.flatnonzero(np.diff(sorted_x)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [x.shape[0]]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def srcc(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation of two equally long sequences (ties averaged).

    Returns NaN when either side is constant (the correlation is undefined), as scipy does.

    Example:
        >>> srcc([1, 2, 3, 4], [10, 30, 20, 40])
        0.8
    """
    a, b = _pair(a, b)
    if a.shape[0] < 2:
        raise ValueError("SRCC needs at least two items")
    ra, rb = rankdata(a) - (a.shape[0] + 1) / 2.0, rankdata(b) - (b.shape[0] + 1) / 2.0
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if denom == 0:
        return float("nan")
    return float(np.clip((ra * rb).sum() / denom, -1.0, 1.0))


def pra(pred: ArrayLike, truth: ArrayLike) -> float:
    """Pairwise ranking accuracy: the share of pairs with different ``truth`` that ``pred`` orders
    the same way. A tie in ``pred`` counts half (a coin flip). NaN when all truths are equal.

    Example:
        >>> pra([0.1, 0.4, 0.5], [1, 3, 2])     # pairs (0,1), (0,2) right; (1,2) wrong
        0.6666666666666666
    """
    pred, truth = _pair(pred, truth)
    dt = np.sign(truth[:, None] - truth[None, :])
    dp = np.sign(pred[:, None] - pred[None, :])
    upper = np.triu(np.ones_like(dt, dtype=bool), k=1)
    counted = upper & (dt != 0)
    n = int(counted.sum())
    if n == 0:
        return float("nan")
    agree = (dt * dp)[counted]
    return float(((agree > 0).sum() + 0.5 * (agree == 0).sum()) / n)


def mean_abs_error(pred: ArrayLike, truth: ArrayLike) -> float:
    """Mean of ``|pred - truth|``."""
    pred, truth = _pair(pred, truth)
    if pred.shape[0] == 0:
        return float("nan")
    return float(np.abs(pred - truth).mean())


def nanmean(values: Sequence[float]) -> float:
    """Mean of the finite values (NaN when there are none): averaging per-folder metrics."""
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")
