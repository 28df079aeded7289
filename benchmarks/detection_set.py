"""The face detection set of ``bench_detection.py`` and ``bench_small_faces.py``.

- Singles: the 52 photos of ``../shared/data/faces/{train,val}`` and ``examples/faces``, one face
  each, boxes in ``data/face_boxes.json`` (eyebrows to chin, ear to ear; proposed by a detector,
  then checked by eye on a contact sheet).
- Groups: images composed deterministically (seeded) from those faces: 4-10 faces of 40-400 px
  (box side, log-uniform) pasted with a feathered elliptical edge on a background that is a
  face-free region of a photo (sharp or blurred), a colour gradient with noise, or clutter
  (random coloured shapes); half the faces degraded first (downscaled by a factor in
  [0.25, 0.7] and scaled back), since blurry faces are what effres must find too.

``dev`` holds the training identities (for choosing settings), ``test`` the validation
identities and the examples (for reporting). Nothing here is used for training the scorer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
BOXES = Path(__file__).with_name("data") / "face_boxes.json"
ROOTS = {"shared/": ROOT.parent / "shared" / "data", "examples/": ROOT / "examples"}
CANVASES = ((1600, 1200), (2048, 1536), (1200, 1600), (2400, 1600))
BACKGROUNDS = ("photo", "gradient", "clutter", "photo_blur")


@dataclass
class Item:
    name: str
    split: str
    rgb: np.ndarray
    faces: list[list[int]]  # ground-truth boxes [x0, y0, x1, y1]
    factors: list[float] = field(default_factory=list)  # per face: 1 = sharp, else the degradation factor


def _path(key: str) -> Path:
    for prefix, root in ROOTS.items():
        if key.startswith(prefix):
            return root / key[len(prefix):]
    raise KeyError(key)


def available() -> bool:
    return all(root.is_dir() for root in ROOTS.values())


def singles() -> list[Item]:
    boxes = json.loads(BOXES.read_text())
    return [Item(key, "dev" if "/train/" in key else "test", np.asarray(Image.open(_path(key)).convert("RGB")),
                 [box], [1.0]) for key, box in boxes.items()]


def face_cutout(rgb: np.ndarray, box: list[int], margin: float = 0.6):
    """The face with hair around it, a feathered elliptical alpha, and the face box inside the cutout."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    mw, mh = (x1 - x0) * margin, (y1 - y0) * margin
    cx0, cy0, cx1, cy1 = int(max(0, x0 - mw)), int(max(0, y0 - mh)), int(min(w, x1 + mw)), int(min(h, y1 + mh))
    crop = Image.fromarray(rgb[cy0:cy1, cx0:cx1])
    alpha = Image.new("L", crop.size, 0)
    ImageDraw.Draw(alpha).ellipse([0.04 * crop.width, 0.02 * crop.height, 0.96 * crop.width, 0.98 * crop.height],
                                  fill=255)
    alpha = alpha.filter(ImageFilter.GaussianBlur(0.04 * crop.width))
    return crop, alpha, (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0)


def degrade(img: Image.Image, factor: float) -> Image.Image:
    """Downscale by ``factor`` (antialiased) and scale back with bicubic: detail of a ``factor`` x smaller image."""
    if factor >= 1:
        return img
    small = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))), Image.LANCZOS)
    return small.resize(img.size, Image.BICUBIC)


def _face_free_region(item: Item) -> Image.Image | None:
    """The largest strip of the photo beside, above or below its (generously grown) face box."""
    h, w = item.rgb.shape[:2]
    x0, y0, x1, y1 = item.faces[0]
    fw, fh = x1 - x0, y1 - y0
    gx0, gy0, gx1, gy1 = max(0, x0 - fw), max(0, y0 - fh), min(w, x1 + fw), min(h, y1 + 1.5 * fh)
    strips = [(0, int(gy1), w, h), (0, 0, w, int(gy0)), (0, 0, int(gx0), h), (int(gx1), 0, w, h)]
    best = max(strips, key=lambda s: (s[2] - s[0]) * (s[3] - s[1]))
    if (best[2] - best[0]) < 128 or (best[3] - best[1]) < 128:
        return None
    return Image.fromarray(item.rgb[best[1]:best[3], best[0]:best[2]])


def _background(rng, kind: str, size: tuple[int, int], regions: list[Image.Image]) -> Image.Image:
    W, H = size
    if kind in ("photo", "photo_blur"):
        region = regions[rng.integers(len(regions))].resize(size, Image.BICUBIC)
        return region.filter(ImageFilter.GaussianBlur(6)) if kind == "photo_blur" else region
    if kind == "gradient":
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, H)[:, None, None]
        img = a * (1 - t) + b * t + rng.normal(0, 6, (H, W, 3))
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(60):
        x, y, r = int(rng.integers(0, W)), int(rng.integers(0, H)), int(rng.integers(20, 300))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x - r, y - r // 2, x + r, y + r // 2], fill=colour)
    return img


def groups(sources: list[Item], split: str, n_images: int, seed: int, sizes=(40, 400)) -> list[Item]:
    """``n_images`` group images of faces from ``sources`` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    regions = [r for r in (_face_free_region(s) for s in sources) if r is not None]
    out = []
    for i in range(n_images):
        size = CANVASES[i % len(CANVASES)]
        canvas = _background(rng, BACKGROUNDS[i % len(BACKGROUNDS)], size, regions).convert("RGB")
        placed, faces, factors = [], [], []
        n = int(rng.integers(4, 11))
        for _ in range(300):
            if len(faces) == n:
                break
            side = float(np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1]))))
            src = sources[rng.integers(len(sources))]
            factor = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.25, 0.7))
            crop, alpha, (bx0, by0, bx1, by1) = face_cutout(src.rgb, src.faces[0])
            k = side / max(bx1 - bx0, by1 - by0)
            cw, ch = max(1, round(crop.width * k)), max(1, round(crop.height * k))
            if cw >= size[0] or ch >= size[1]:
                continue
            x, y = int(rng.integers(0, size[0] - cw)), int(rng.integers(0, size[1] - ch))
            if any(x < px1 and px0 < x + cw and y < py1 and py0 < y + ch for px0, py0, px1, py1 in placed):
                continue
            canvas.paste(degrade(crop.resize((cw, ch), Image.LANCZOS), factor), (x, y),
                         alpha.resize((cw, ch), Image.BILINEAR))
            placed.append((x, y, x + cw, y + ch))
            faces.append([round(x + bx0 * k), round(y + by0 * k), round(x + bx1 * k), round(y + by1 * k)])
            factors.append(factor)
        out.append(Item(f"group_{split}_{i:02d}", split, np.asarray(canvas), faces, factors))
    return out


def detection_set(n_groups: int = 20) -> list[Item]:
    """The singles, then ``n_groups`` group images per split."""
    items = singles()
    out = list(items)
    for split, seed in (("dev", 1), ("test", 2)):
        sources = [it for it in items if it.split == split and "upscaled" not in it.name]
        out += groups(sources, split, n_groups, seed)
    return out


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match(truth: list, found: list, min_iou: float = 0.4) -> tuple[list[int], int]:
    """Greedy matching of detections to true faces: (index of the detection per true face or -1,
    number of detections that overlap no true face: false faces)."""
    hit = [-1] * len(truth)
    false = 0
    for j, d in enumerate(found):
        overlaps = [iou(g, d) for g in truth]
        free = [(v, i) for i, v in enumerate(overlaps) if hit[i] < 0 and v >= min_iou]
        if free:
            hit[max(free)[1]] = j
        elif not any(v >= min_iou for v in overlaps):
            false += 1
    return hit, false
