"""Choosing which items of a scored batch to keep: a threshold, the top N, or both.

Pure Python over plain numbers, so the ComfyUI filter node, the CLI and dataset scripts share one
rule. Scores are "higher is better"; ``None`` and NaN mean "could not be scored" and never pass
a threshold (an image without a usable face is not a sharp image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

ORDERS = ("input", "best")
FALLBACKS = ("none", "best")


@dataclass(frozen=True)
class Selection:
    """Indices into the scored batch.

    ``kept`` is in the requested order, ``rejected`` always in input order; together they hold
    every index once. ``fallback_used`` is True when nothing passed and the best item was kept
    anyway (``fallback="best"``).
    """

    kept: list[int]
    rejected: list[int]
    fallback_used: bool = False

    def __len__(self) -> int:
        return len(self.kept)


def is_scored(value: float | None) -> bool:
    """True for a finite number; ``None``, NaN and infinities are "not scored"."""
    return value is not None and math.isfinite(float(value))


def select(scores: Sequence[float | None], *, threshold: float | None = None, top_n: int = 0,
           passes: Sequence[bool] | None = None, order: str = "input", fallback: str = "none") -> Selection:
    """Keep the items whose score is at least ``threshold``, at most ``top_n`` of them.

    Args:
        scores: one score per item, higher is better; ``None``/NaN = unscored (never kept,
            except by no rule at all: with no threshold, no ``passes`` and ``top_n=0`` every
            scored item is kept).
        threshold: minimum score to keep an item, or ``None`` for no threshold.
        top_n: keep at most this many of the passing items, the best first; 0 = no limit.
        passes: optional extra per-item condition (e.g. a pixel-count rule), ANDed in.
        order: ``"input"`` keeps the kept items in input order, ``"best"`` sorts them best first
            (ties keep input order).
        fallback: what to do when nothing passes: ``"none"`` keeps nothing, ``"best"`` keeps the
            single best scored item (if any item is scored at all).

    Example:
        >>> select([0.2, 0.9, None, 0.6], threshold=0.5).kept
        [1, 3]
        >>> select([0.2, 0.9, None, 0.6], top_n=1).kept
        [1]
        >>> select([0.2, 0.3], threshold=0.5, fallback="best")
        Selection(kept=[1], rejected=[0], fallback_used=True)
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0 (0 = no limit), got {top_n}")
    n = len(scores)
    if passes is not None and len(passes) != n:
        raise ValueError(f"passes has {len(passes)} entries for {n} scores")
    values = [float(s) if is_scored(s) else None for s in scores]

    def ok(i: int) -> bool:
        v = values[i]
        if v is None:
            return False
        if threshold is not None and v < threshold:
            return False
        return passes is None or bool(passes[i])

    # Best first; the index breaks ties so the result never depends on sort stability details.
    ranked = sorted((i for i in range(n) if ok(i)), key=lambda i: (-values[i], i))
    if top_n:
        ranked = ranked[:top_n]
    fallback_used = False
    if not ranked and fallback == "best":
        scored = sorted((i for i in range(n) if values[i] is not None), key=lambda i: (-values[i], i))
        if scored:
            ranked, fallback_used = scored[:1], True
    kept = ranked if order == "best" else sorted(ranked)
    chosen = set(kept)
    return Selection(kept=kept, rejected=[i for i in range(n) if i not in chosen], fallback_used=fallback_used)
