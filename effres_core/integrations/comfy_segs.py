"""Impact Pack's SEGS as plain Python values: build them from effres' face detections, score each
face on its crop, and split a SEGS into the faces to detail and the faces to leave alone.

No ComfyUI or Impact Pack import: a SEGS is ``((height, width), [SEG, ...])`` and a ``SEG`` a
namedtuple. The structure matches ComfyUI-Impact-Pack 7.10.6 (commit 727295b, 2024-10-24,
``modules/impact/core.py``) and what its Ultralytics bbox detector builds (ComfyUI-Impact-Subpack,
``subcore.UltraBBoxDetector.detect``):

====================== ===============================================================
field                  value
====================== ===============================================================
``cropped_image``      ``[1, h, w, C]`` float tensor in [0, 1], the image cut to ``crop_region``
                       (mask-built SEGS carry ``None``)
``cropped_mask``       ``[h, w]`` float32 array in [0, 1] over ``crop_region``
``confidence``         the detector's confidence (a float)
``crop_region``        ``[x1, y1, x2, y2]`` ints, the detail crop in image pixels
``bbox``               ``(x1, y1, x2, y2)``, the detected object in image pixels
``label``              a string (``"face"``)
``control_net_wrapper`` ``None`` (the default)
====================== ===============================================================

Impact Pack reads SEGs by attribute (``seg.crop_region``) and builds new ones positionally, so any
namedtuple with these fields in this order (its own class or :data:`SEG` here) works both ways.
"""

from __future__ import annotations

import math
import weakref
from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..measure.faces import FaceBox

SEG_FIELDS = ("cropped_image", "cropped_mask", "confidence", "crop_region", "bbox", "label", "control_net_wrapper")
#: Impact Pack's SEG, field for field (``control_net_wrapper`` defaults to None).
SEG = namedtuple("SEG", SEG_FIELDS, defaults=[None])

KEEP_MODES = ("in range", "out of range")
UNSCORED = ("kept", "rejected")


# ---- structure -----------------------------------------------------------------------------------
def check_segs(segs: Any) -> tuple[tuple[int, int], list]:
    """Validate a SEGS value: ``((height, width), [SEG, ...])``; returns ``((h, w), list of SEGs)``."""
    if not isinstance(segs, (tuple, list)) or len(segs) != 2:
        raise ValueError(f"expected SEGS ((height, width), [SEG, ...]), got a {type(segs).__name__}"
                         + (f" of length {len(segs)}" if isinstance(segs, (tuple, list)) else ""))
    shape, items = segs
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"SEGS shape must be (height, width), got {shape!r}")
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"SEGS items must be a list of SEG, got a {type(items).__name__}")
    for i, seg in enumerate(items):
        missing = [f for f in ("cropped_mask", "crop_region", "bbox") if not hasattr(seg, f)]
        if missing:
            raise ValueError(f"SEGS item {i} is a {type(seg).__name__} without {', '.join(missing)}: "
                             f"not an Impact Pack SEG")
        region = seg.crop_region
        if len(region) != 4 or not (int(region[2]) > int(region[0]) and int(region[3]) > int(region[1])):
            raise ValueError(f"SEGS item {i} has an empty or malformed crop_region {list(region)}")
    return (int(shape[0]), int(shape[1])), list(items)


def make_crop_region(width: int, height: int, box: Sequence[float], crop_factor: float,
                     crop_min_size: int | None = None) -> list[int]:
    """The detail crop around ``box`` as Impact Pack lays it out: ``crop_factor`` times the box on
    each side (at least ``crop_min_size``), centred on the box, moved back inside the image where it
    runs over an edge and cut to the image where it is larger than it. ``[x1, y1, x2, y2]``.

    Example:
        >>> make_crop_region(100, 100, (40, 40, 60, 60), 2.0)
        [30, 30, 70, 70]
        >>> make_crop_region(100, 100, (0, 0, 20, 20), 3.0)   # shifted inside the image
        [0, 0, 60, 60]
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    crop_w, crop_h = (x2 - x1) * crop_factor, (y2 - y1) * crop_factor
    if crop_min_size is not None:
        crop_w, crop_h = max(crop_min_size, crop_w), max(crop_min_size, crop_h)

    def span(limit: int, centre: float, size: float) -> tuple[int, int]:
        start = int(centre - size / 2)
        if start < 0:
            return 0, int(min(limit, size))
        if start + size > limit:
            return int(max(0, limit - size)), int(limit)
        return int(start), int(min(limit, start + size))

    left, right = span(width, x1 + (x2 - x1) / 2, crop_w)
    top, bottom = span(height, y1 + (y2 - y1) / 2, crop_h)
    return [left, top, right, bottom]


def faces_to_segs(image: torch.Tensor, boxes: Sequence[FaceBox], *, crop_factor: float = 3.0,
                  dilation: int = 0, drop_size: int = 10, label: str = "face",
                  crop_min_size: int | None = None) -> tuple[tuple[int, int], list]:
    """SEGS for one ComfyUI image ``[1, H, W, C]`` (or ``[H, W, C]``) from face boxes, as Impact
    Pack's bbox detectors build them: the crop around each box, a box mask grown by ``dilation``
    pixels (shrunk when negative), the detector's score as confidence. Boxes with a side of
    ``drop_size`` pixels or less are left out."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"SEGS describe one image; got a batch of shape {tuple(image.shape)} "
                         f"(split the batch first, e.g. with an image-list node)")
    _, h, w, _ = image.shape
    items = []
    for box in boxes:
        if box.width <= drop_size or box.height <= drop_size:
            continue
        bbox = (int(box.x0), int(box.y0), int(box.x1), int(box.y1))
        region = make_crop_region(w, h, bbox, crop_factor, crop_min_size)
        x1, y1, x2, y2 = region
        mask = np.zeros((y2 - y1, x2 - x1), dtype=np.float32)
        mx0, my0 = max(0, bbox[0] - x1 - dilation), max(0, bbox[1] - y1 - dilation)
        mx1, my1 = min(x2 - x1, bbox[2] - x1 + dilation), min(y2 - y1, bbox[3] - y1 + dilation)
        if mx1 > mx0 and my1 > my0:
            mask[my0:my1, mx0:mx1] = 1.0
        crop = image[:, y1:y2, x1:x2, :].detach().clone().cpu()
        items.append(SEG(crop, mask, float(box.score), region, bbox, label, None))
    return (int(h), int(w)), items


def combined_mask(segs) -> torch.Tensor:
    """The union of a SEGS' masks on its full image, ``[1, H, W]`` float (a ComfyUI MASK)."""
    (h, w), items = check_segs(segs)
    out = torch.zeros(h, w)
    for seg in items:
        x1, y1, x2, y2 = (int(v) for v in seg.crop_region)
        m = seg.cropped_mask
        m = torch.as_tensor(np.asarray(m, dtype=np.float32)) if not torch.is_tensor(m) else m.float().cpu()
        if m.ndim == 3:  # a per-frame mask stack (Impact's batch_mask_to_segs): any frame
            m = m.amax(dim=0)
        m = m[: max(0, min(h, y2) - y1), : max(0, min(w, x2) - x1)]
        region = out[y1:y1 + m.shape[0], x1:x1 + m.shape[1]]
        torch.maximum(region, m, out=region)
    return out.unsqueeze(0)


# ---- scoring -------------------------------------------------------------------------------------
@dataclass
class SegScore:
    """The score of one SEG: its face ``ratio`` (None when it could not be scored, with a
    ``reason``), the effective face size in pixels (ratio x the shorter side of the SEG's box),
    and how the face was found (``"detected in crop"`` or ``"SEG box"``)."""

    index: int
    label: str
    bbox: tuple[int, int, int, int]
    ratio: float | None
    effective_pixels: int | None
    found_by: str | None = None
    reason: str | None = None

    @property
    def scored(self) -> bool:
        return self.ratio is not None


def seg_crop(seg, shape: tuple[int, int], image: torch.Tensor | None = None) -> torch.Tensor:
    """The SEG's crop as a ComfyUI IMAGE ``[1, h, w, C]``: cut from ``image`` (its crop region,
    rescaled when the SEGS were made for another size) when given, else its ``cropped_image``."""
    if image is not None:
        if image.ndim == 3:
            image = image.unsqueeze(0)
        ih, iw = image.shape[1:3]
        sy, sx = ih / shape[0], iw / shape[1]
        x1, y1, x2, y2 = (int(v) for v in seg.crop_region)
        x1, x2 = int(x1 * sx), int(x2 * sx)
        y1, y2 = int(y1 * sy), int(y2 * sy)
        crop = image[:1, max(0, y1):min(ih, y2), max(0, x1):min(iw, x2), :]
    else:
        crop = seg.cropped_image
        if crop is None:
            raise ValueError("this SEG has no cropped_image (SEGS made from masks carry none): "
                             "connect the image the SEGS were made from")
        crop = torch.as_tensor(crop) if not torch.is_tensor(crop) else crop
        if crop.ndim == 3:
            crop = crop.unsqueeze(0)
    if crop.ndim != 4 or crop.shape[1] < 1 or crop.shape[2] < 1:
        raise ValueError(f"empty SEG crop of shape {tuple(crop.shape)}")
    return crop[:1].float()


def _seg_box_in_crop(seg, shape: tuple[int, int], crop: torch.Tensor) -> tuple[int, int, int, int]:
    """The SEG's bbox in the coordinates of its crop (scaled like the crop)."""
    x1, y1, x2, y2 = (float(v) for v in seg.crop_region)
    sx, sy = crop.shape[2] / max(1.0, x2 - x1), crop.shape[1] / max(1.0, y2 - y1)
    bx1, by1, bx2, by2 = (float(v) for v in seg.bbox)
    return (int(max(0, (bx1 - x1) * sx)), int(max(0, (by1 - y1) * sy)),
            int(min(crop.shape[2], math.ceil((bx2 - x1) * sx))), int(min(crop.shape[1], math.ceil((by2 - y1) * sy))))


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def score_segs(model, segs, image: torch.Tensor | None = None, box_model=None) -> list[SegScore]:
    """Score the face of every SEG with ``model`` (an :class:`~effres_core.measure.scorer.EffRes`).

    Each crop is scored as ``model.score`` scores any image (its detector, crop margin, mask and
    small-face rules); of the faces it finds, the one that overlaps the SEG's box most is the SEG's
    face. When none does (the crop is tight, or the detector misses a soft face), the SEG's box
    itself is scored as the face with ``box_model`` (an EffRes with ``detector="whole"``; one is
    made from ``model`` when not given).
    """
    shape, items = check_segs(segs)
    out = []
    for i, seg in enumerate(items):
        label = str(seg.label) if getattr(seg, "label", None) is not None else ""
        bbox = tuple(int(round(float(v))) for v in seg.bbox)
        short_side = max(0, min(bbox[2] - bbox[0], bbox[3] - bbox[1]))
        crop = seg_crop(seg, shape, image)
        inner = _seg_box_in_crop(seg, shape, crop)
        result = model.score(crop)[0]
        faces = [f for f in result.faces if _overlap(f.box, inner) > 0.5]
        face = max(faces, key=lambda f: _overlap(f.box, inner), default=None)
        found_by, ratio, reason = "detected in crop", None, None
        if face is not None:
            ratio, reason = face.ratio, face.reason
        if ratio is None:
            if box_model is None:
                box_model = whole_face_model(model)
            x0, y0, x1, y1 = inner
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                box_result = box_model.score(crop[:, y0:y1, x0:x1, :])[0]
                found_by = "SEG box"
                ratio = box_result.ratio
                reason = None if ratio is not None else (box_result.reason or box_result.error)
            else:
                reason = reason or f"SEG box {x1 - x0}x{y1 - y0} px is too small"
        eff = None if ratio is None else int(round(ratio * short_side))
        out.append(SegScore(i, label, bbox, ratio, eff, found_by if ratio is not None else None, reason))
    return out


_whole_models: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def whole_face_model(model):
    """An EffRes sharing ``model``'s network and settings whose detector takes the whole image as
    the face (for crops that already are a face box); made once per model."""
    from ..measure.scorer import EffRes

    if model not in _whole_models:
        with torch.inference_mode(False):
            _whole_models[model] = EffRes(model.net, detector="whole", masker=model.masker_name,
                                          n_patches=model.n_patches, min_foreground=model.min_foreground,
                                          margin=model.margin, device=model.device, chunk_size=model.chunk_size,
                                          min_face_size=model.min_face_size, face_size=model.face_size)
    return _whole_models[model]


# ---- splitting -----------------------------------------------------------------------------------
def in_range(score: SegScore, min_ratio: float = 0.0, max_ratio: float = 1.0, min_effective_pixels: int = 0) -> bool:
    """``min_ratio <= ratio <= max_ratio`` and ``effective_pixels >= min_effective_pixels``."""
    return (score.ratio is not None and min_ratio <= score.ratio <= max_ratio
            and (score.effective_pixels or 0) >= min_effective_pixels)


def split_segs(segs, scores: Sequence[SegScore], *, min_ratio: float = 0.0, max_ratio: float = 1.0,
               min_effective_pixels: int = 0, keep: str = "in range", unscored: str = "kept"):
    """``(kept SEGS, rejected SEGS, kept flags)``: ``keep="in range"`` keeps the faces inside the
    range (:func:`in_range`), ``"out of range"`` the faces outside it; faces that could not be
    scored go to ``unscored`` (``"kept"`` or ``"rejected"``). Both SEGS keep the input's shape."""
    if keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
    if unscored not in UNSCORED:
        raise ValueError(f"unscored must be one of {UNSCORED}, got {unscored!r}")
    if not 0.0 <= min_ratio <= max_ratio:
        raise ValueError(f"need 0 <= min_ratio <= max_ratio, got {min_ratio} and {max_ratio}")
    shape, items = check_segs(segs)
    if len(scores) != len(items):
        raise ValueError(f"{len(scores)} scores for {len(items)} SEGs")
    flags = []
    for s in scores:
        if not s.scored:
            flags.append(unscored == "kept")
        else:
            flags.append(in_range(s, min_ratio, max_ratio, min_effective_pixels) == (keep == "in range"))
    kept = [seg for seg, f in zip(items, flags) if f]
    rejected = [seg for seg, f in zip(items, flags) if not f]
    return (shape, kept), (shape, rejected), flags


def describe_scores(scores: Sequence[SegScore], flags: Sequence[bool] | None = None) -> str:
    """One line per SEG, for the node's text output."""
    if not scores:
        return "no SEGs: nothing to score"
    lines = []
    for k, s in enumerate(scores):
        x1, y1, x2, y2 = s.bbox
        where = f"{s.label or 'seg'} #{s.index} at ({x1}, {y1}) {x2 - x1}x{y2 - y1} px"
        mark = "" if flags is None else (" -> kept" if flags[k] else " -> rejected")
        if s.scored:
            lines.append(f"{where}: ratio {s.ratio:.3f}, effective {s.effective_pixels} px ({s.found_by}){mark}")
        else:
            lines.append(f"{where}: not scored ({s.reason or 'unknown reason'}){mark}")
    return "\n".join(lines)
