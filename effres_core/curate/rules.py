"""Which files a curate run keeps: a ratio and pixel threshold, the top N, and which faces count.

Every rule reduces an image to one number, its ``decision_ratio``, then :func:`~effres_core.measure.selection.select`
applies the thresholds and the top N (the same rule as the ComfyUI filter node):

- ``largest`` (default): the largest face's ratio. The main subject decides; a soft face in the
  background does not reject a sharp portrait, and a sharp bystander does not rescue a soft one.
- ``all``: the lowest ratio over the faces that could be scored: every face must pass.
- ``any``: the highest: one sharp face is enough.
- ``image``: the image's own ratio (the median over the patches of all faces).

``min_effective_pixels`` asks ``round(decision_ratio * image height)`` to reach that many pixels
(the filter node's effective height).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..measure.selection import is_scored, select

FACE_RULES = ("largest", "all", "any", "image")


@dataclass(frozen=True)
class Rules:
    """``min_ratio`` (None = no threshold), ``min_effective_pixels`` (0 = off), ``top_n`` (0 = all),
    ``faces``: one of :data:`FACE_RULES`."""

    min_ratio: float | None = None
    min_effective_pixels: int = 0
    top_n: int = 0
    faces: str = "largest"

    def __post_init__(self):
        if self.faces not in FACE_RULES:
            raise ValueError(f"faces must be one of {FACE_RULES}, got {self.faces!r}")
        if self.min_ratio is not None and not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must be in [0, 1], got {self.min_ratio}")
        if self.min_effective_pixels < 0:
            raise ValueError(f"min_effective_pixels must be >= 0, got {self.min_effective_pixels}")
        if self.top_n < 0:
            raise ValueError(f"top_n must be >= 0 (0 = no limit), got {self.top_n}")


def _area(face: dict) -> int:
    x0, y0, x1, y1 = face.get("box") or (0, 0, 0, 0)
    return max(0, x1 - x0) * max(0, y1 - y0)


def decision_ratio(row: dict, faces: str = "largest") -> float | None:
    """The number the rules judge for one manifest row (``None`` when nothing could be scored)."""
    if faces == "image":
        return row.get("ratio")
    found = row.get("faces") or []
    if faces == "largest":
        if not found:
            return None
        return max(found, key=_area).get("ratio")
    scored = [f["ratio"] for f in found if is_scored(f.get("ratio"))]
    if not scored:
        return None
    return min(scored) if faces == "all" else max(scored)


def decide(rows: list[dict], rules: Rules) -> None:
    """Set ``decision_ratio``, ``decision`` (``kept`` | ``rejected`` | ``failed``) and ``decision_reason``
    on each row (``reason`` stays the scorer's: why an image has no ratio)."""
    values = []
    for r in rows:
        r["decision_ratio"] = None if r.get("error") else decision_ratio(r, rules.faces)
        values.append(r["decision_ratio"])
    pixels_ok = None
    if rules.min_effective_pixels:
        pixels_ok = [v is not None and r.get("height") is not None
                     and round(v * r["height"]) >= rules.min_effective_pixels for v, r in zip(values, rows)]
    sel = select(values, threshold=rules.min_ratio, top_n=rules.top_n, passes=pixels_ok)
    kept = set(sel.kept)
    for i, r in enumerate(rows):
        v = values[i]
        if r.get("error"):
            r["decision"], r["decision_reason"] = "failed", r["error"]
        elif i in kept:
            r["decision"], r["decision_reason"] = "kept", None
        else:
            r["decision"] = "rejected"
            r["decision_reason"] = _why_rejected(r, v, rules, pixels_ok[i] if pixels_ok else True)


def _why_rejected(row: dict, value: float | None, rules: Rules, pixels_ok: bool) -> str:
    if value is None:
        return row.get("reason") or ("the largest face could not be scored" if rules.faces == "largest" and row.get("faces")
                        else "no face found" if not row.get("faces") else "no face could be scored")
    if rules.min_ratio is not None and value < rules.min_ratio:
        return f"ratio {value:.3f} < {rules.min_ratio}"
    if not pixels_ok:
        return f"effective height {round(value * row['height'])} px < {rules.min_effective_pixels}"
    return f"not in the top {rules.top_n}"
