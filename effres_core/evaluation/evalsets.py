"""Evaluation sets with known truth, generated deterministically from a folder of sharp faces.

* **Mixed folders** (the paper's protocol, with known truth): per face, 10 versions at 10
  different true factors spread log-uniformly over [1/10, 1], each with its own down/up resizer
  and its own nuisance that must not change the answer. Flavour ``seen`` uses the training's
  kernels and nuisances; flavour ``unseen`` only resizers and nuisances training never uses.
* **Ladders**: one face, one kernel (down and up), factors 1, 1/1.5, ..., 1/8, nothing else.
* **Families**: degradations training never produces (Gaussian blur, defocus, noisy or sharpened
  upscales, other libraries' resizers); truth is the order of the degradation strength.
* **Robustness**: a sharp face under growing JPEG/WebP compression or shot noise: a good score
  barely moves.

Images are ``[1, 3, H, W]`` float tensors in [0, 1], quantised to 8 bits like real files.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..synthesis.degradations import KERNELS, resize_antialiased
from .transforms import (
    FLAVOURS,
    UNSEEN_DOWN,
    UNSEEN_RESIZERS,
    UNSEEN_UP,
    Image4,
    _from_hwc,
    _to_hwc,
    get_resizer,
    jpeg_quality,
    laplacian_sharpen,
    nuisances_for,
    quantize,
    resample,
    shot_noise,
    webp,
)

logger = logging.getLogger("effres")


LADDER_FACTORS = (1.0, 1 / 1.5, 1 / 2, 1 / 3, 1 / 4, 1 / 6, 1 / 8)


# ------------------------------------------------------------------------------------ sharp faces

@dataclass
class SharpFace:
    """One sharp evaluation source: a face crop as ``[1, 3, H, W]`` float."""

    name: str
    image: Image4
    cropped_by: str = "centre"


def _centre_square(h: int, w: int) -> tuple[int, int, int, int]:
    side = min(h, w)
    return (w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side


def _face_square(rgb: np.ndarray, detector: Callable, min_side: int) -> tuple[int, int, int, int] | None:
    """A square around the largest detected face: head, hair and some shoulders."""
    boxes = detector(rgb)
    if not boxes:
        return None
    b = boxes[0]
    h, w = rgb.shape[:2]
    side = int(min(min(h, w), max(2.2 * max(b.width, b.height), min_side)))
    cx, cy = (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2 + 0.15 * b.height
    x0 = int(np.clip(cx - side / 2, 0, w - side))
    y0 = int(np.clip(cy - side / 2, 0, h - side))
    return x0, y0, x0 + side, y0 + side


def _resolve_detector(detector) -> tuple[Callable | None, str]:
    if callable(detector):
        return detector, getattr(detector, "__name__", "custom")
    if detector in (None, "centre", "center", "none"):
        return None, "centre"
    try:
        from ..measure.faces import get_detector

        det, name = get_detector(detector)
        det(np.zeros((64, 64, 3), dtype=np.uint8))  # fail now, not per image, if it cannot run
        return det, name
    except Exception as err:  # no usable detector here: the images are used as they are
        logger.warning("evaluation: face detector %r unavailable (%s: %s); using centre crops",
                       detector, err.__class__.__name__, err)
        return None, "centre"


def load_sharp_faces(sharp_dir: str | Path, *, max_side: int = 512, min_side: int = 160, halve: bool = True,
                     max_faces: int | None = None, detector="haar") -> list[SharpFace]:
    """Sharp face crops from a folder (recursive), sorted by path, deterministic.

    Each image is cropped to a square around its largest face (or its centre when no detector
    works or no face is found), halved with an antialiased box filter when ``halve`` (JPEG
    sources at quality ~55-75 are not fully sharp at full size), then downscaled (antialiased,
    so it stays sharp) until its side is at most ``max_side``. Crops smaller than ``min_side``
    after that are skipped with a warning.
    """
    from ..measure.imageio import ImageLoadError, find_images, load_image

    if not Path(sharp_dir).is_dir():
        raise FileNotFoundError(f"{sharp_dir}: not a folder")
    files = find_images([sharp_dir])
    if not files:
        raise FileNotFoundError(f"no images found in {sharp_dir}")
    det, det_name = _resolve_detector(detector)
    faces: list[SharpFace] = []
    for path in files:
        if max_faces is not None and len(faces) >= max_faces:
            break
        try:
            rgb = load_image(path)
        except ImageLoadError as err:
            logger.warning("evaluation: skipping %s", err)
            continue
        h, w = rgb.shape[:2]
        box, how = None, "centre"
        if det is not None:
            box = _face_square(rgb, det, 2 * min_side if halve else min_side)
            how = det_name if box is not None else "centre (no face found)"
        x0, y0, x1, y1 = box or _centre_square(h, w)
        crop = torch.from_numpy(rgb[y0:y1, x0:x1].copy()).permute(2, 0, 1).unsqueeze(0).float() / 255
        if halve and min(crop.shape[-2:]) >= 2 * min_side:
            crop = resize_antialiased(crop, (crop.shape[-2] // 2, crop.shape[-1] // 2), "area")
        side = max(crop.shape[-2:])
        if side > max_side:
            s = max_side / side
            crop = resize_antialiased(crop, (max(1, round(crop.shape[-2] * s)), max(1, round(crop.shape[-1] * s))),
                                      "lanczos3")
        if min(crop.shape[-2:]) < min_side:
            logger.warning("evaluation: skipping %s: face crop %s is smaller than %d px", path.name,
                           tuple(crop.shape[-2:]), min_side)
            continue
        faces.append(SharpFace(path.stem, quantize(crop), how))
    if not faces:
        raise ValueError(f"no usable sharp faces in {sharp_dir}")
    return faces


# -------------------------------------------------------------------------------------- the sets

@dataclass
class EvalItem:
    image: Image4
    truth: float
    note: str = ""


@dataclass(frozen=True)
class EvalGroup:
    """A set of images ranked against each other: ``kind`` is mixed|ladder|family|robustness,
    ``name`` the flavour, kernel or family, ``face`` the index of the sharp face."""

    kind: str
    name: str
    face: int
    seed: int = 0
    min_side: int = 136

    def rng(self) -> np.random.Generator:
        # crc32 of the names: stable across runs and Python versions (hash() is salted).
        return np.random.default_rng([self.seed, self.face, zlib.crc32(f"{self.kind}/{self.name}".encode())])

    def build(self, faces: Sequence[SharpFace]) -> list[EvalItem]:
        x = faces[self.face].image
        if self.kind == "mixed":
            return mixed_folder(x, self.name, self.rng(), min_side=self.min_side)
        if self.kind == "ladder":
            return ladder(x, self.name, self.name)
        if self.kind == "family":
            return FAMILIES[self.name](x, self.rng())
        if self.kind == "robustness":
            return ROBUSTNESS[self.name](x, self.rng())
        raise ValueError(f"unknown group kind {self.kind!r}")


def mixed_factors(rng: np.random.Generator, n: int = 10, low: float = 0.1) -> list[float]:
    """``n`` factors, one per log-uniform stratum of [low, 1], jittered; the top one is exactly 1
    (folders of real photos usually hold the original)."""
    edges = np.linspace(np.log(low), 0.0, n + 1)
    factors = [float(np.exp(rng.uniform(edges[i], edges[i + 1]))) for i in range(n)]
    factors[-1] = 1.0
    return factors


def mixed_folder(x: Image4, flavour: str, rng: np.random.Generator, n: int = 10, low: float = 0.1,
                 min_side: int = 136) -> list[EvalItem]:
    """One face, ``n`` versions at ``n`` true factors, each with its own resizers and nuisance.

    One version in each cycle of nuisances is instead a smaller but sharp copy (the face
    resized down first), so the folder also mixes image sizes, as real folders do.
    """
    if flavour == "seen":
        downs, ups = list(KERNELS), list(KERNELS)
    elif flavour == "unseen":
        downs, ups = list(UNSEEN_DOWN), list(UNSEEN_UP)
    else:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    nuisances = nuisances_for(flavour)
    kinds = list(nuisances) + ["smaller_copy"]
    order: list[str] = []
    while len(order) < n:
        order += [kinds[i] for i in rng.permutation(len(kinds))]
    items = []
    for factor, kind in zip(mixed_factors(rng, n, low), order[:n]):
        down, up = str(rng.choice(downs)), str(rng.choice(ups))
        img = x
        if kind == "smaller_copy":
            h, w = img.shape[-2:]
            s = max(rng.uniform(0.55, 0.8), min_side / min(h, w))
            # An antialiased shrink: the copy must stay sharp (aliasing is the resamplers' job).
            shrink = str(rng.choice([k for k in downs if k != "nearest"] if flavour == "seen"
                                    else ["pillow_hamming", "opencv_area"]))
            if s < 0.97:
                img = quantize(get_resizer(shrink)(img, (round(h * s), round(w * s))))
        img, truth = resample(img, factor, down, up)
        if kind != "smaller_copy":
            img = nuisances[kind](img, rng)
        note = f"{kind} down={down} up={up}" if truth < 1 else kind
        items.append(EvalItem(quantize(img), truth, note))
    return items


def ladder(x: Image4, down: str, up: str, factors: Sequence[float] = LADDER_FACTORS) -> list[EvalItem]:
    """One face at each factor, one resizer pair, nothing else."""
    items = []
    for f in factors:
        img, truth = resample(x, f, down, up)
        items.append(EvalItem(quantize(img), truth, f"{down}/{up}"))
    return items


def _blur_ladder(x: Image4, kernels: Sequence[np.ndarray], strengths: Sequence[float]) -> list[EvalItem]:
    import cv2

    hwc = _to_hwc(x)
    items = []
    for k, s in zip(kernels, strengths):
        out = hwc if k is None else cv2.filter2D(hwc, -1, k, borderType=cv2.BORDER_REFLECT)
        items.append(EvalItem(quantize(_from_hwc(out)), 1.0 / (1.0 + s), f"strength {s:g}"))
    return items


def gaussian_blur_family(x: Image4, rng: np.random.Generator) -> list[EvalItem]:
    """Gaussian blur of growing sigma; truth = 1 / (1 + sigma), used for its order only."""
    import cv2

    sigmas = (0.0, 0.6, 1.0, 1.5, 2.0, 3.0, 4.0)
    kernels = [None] + [np.outer(g, g) for g in (cv2.getGaussianKernel(2 * int(3 * s + 0.5) + 1, s)
                                                 for s in sigmas[1:])]
    return _blur_ladder(x, kernels, sigmas)


def defocus_family(x: Image4, rng: np.random.Generator) -> list[EvalItem]:
    """Defocus (uniform disk) of growing radius; truth = 1 / (1 + radius), order only."""
    radii = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    kernels: list = [None]
    for r in radii[1:]:
        n = int(np.ceil(r))
        yy, xx = np.mgrid[-n:n + 1, -n:n + 1]
        # Supersampled disk so small radii still differ from each other.
        fine = np.linspace(-0.5 + 1 / 8, 0.5 - 1 / 8, 4)
        cover = np.zeros_like(yy, dtype=np.float64)
        for dy in fine:
            for dx in fine:
                cover += ((yy + dy) ** 2 + (xx + dx) ** 2) <= r * r
        kernels.append((cover / cover.sum()).astype(np.float32))
    return _blur_ladder(x, kernels, radii)


def _factor_ladder_with(x: Image4, rng: np.random.Generator, down: str, up: str,
                        after: Callable[[Image4, np.random.Generator], Image4]) -> list[EvalItem]:
    items = []
    for f in LADDER_FACTORS:
        img, truth = resample(x, f, down, up)
        items.append(EvalItem(quantize(after(img, rng)), truth, f"{down}/{up}"))
    return items


def noise_downscale_family(x: Image4, rng: np.random.Generator) -> list[EvalItem]:
    """Bicubic factor ladder, every step with the same strong shot noise (peak 60 photons)."""
    return _factor_ladder_with(x, rng, "bicubic", "bicubic", lambda im, r: shot_noise(im, r, peak=60.0))


def sharpened_upscale_family(x: Image4, rng: np.random.Generator) -> list[EvalItem]:
    """Bilinear factor ladder, every upscale sharpened with a Laplacian (amount 0.4)."""
    return _factor_ladder_with(x, rng, "bilinear", "bilinear", lambda im, r: laplacian_sharpen(im, r, amount=0.4))


def jpeg_downscale_family(x: Image4, rng: np.random.Generator) -> list[EvalItem]:
    """Lanczos factor ladder saved as JPEG quality 50, as web images are."""
    return _factor_ladder_with(x, rng, "lanczos3", "bicubic", lambda im, r: jpeg_quality(im, 50))


def _library_family(name: str) -> Callable[[Image4, np.random.Generator], list[EvalItem]]:
    return lambda x, rng: ladder(x, name, name)


FAMILIES: dict[str, Callable[[Image4, np.random.Generator], list[EvalItem]]] = {
    "gaussian_blur": gaussian_blur_family,
    "defocus": defocus_family,
    "noise_downscale": noise_downscale_family,
    "sharpened_upscale": sharpened_upscale_family,
    "jpeg_downscale": jpeg_downscale_family,
    **{name: _library_family(name) for name in UNSEEN_RESIZERS},
}


def _constant_truth(x: Image4, outs: Sequence[tuple[Image4, str]]) -> list[EvalItem]:
    return [EvalItem(quantize(x), 1.0, "original")] + [EvalItem(quantize(o), 1.0, n) for o, n in outs]


ROBUSTNESS: dict[str, Callable[[Image4, np.random.Generator], list[EvalItem]]] = {
    "jpeg": lambda x, rng: _constant_truth(x, [(jpeg_quality(x, q), f"q{q}") for q in (90, 75, 60, 50)]),
    "webp": lambda x, rng: _constant_truth(x, [(webp(x, rng, q), f"q{q}") for q in (90, 75, 60, 50)]),
    "shot_noise": lambda x, rng: _constant_truth(x, [(shot_noise(x, rng, p), f"peak {p}")
                                                     for p in (400, 200, 100, 50)]),
}


@dataclass
class SuiteSpec:
    """Which groups an evaluation builds."""

    mixed: Sequence[str] = FLAVOURS
    ladders: Sequence[str] = KERNELS
    families: Sequence[str] = tuple(FAMILIES)
    robustness: Sequence[str] = tuple(ROBUSTNESS)
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def groups(self, n_faces: int, min_side: int = 136) -> list[EvalGroup]:
        for name in self.ladders:
            get_resizer(name)
        for kind, names, table in (("family", self.families, FAMILIES), ("robustness", self.robustness, ROBUSTNESS)):
            unknown = [n for n in names if n not in table]
            if unknown:
                raise ValueError(f"unknown {kind} {unknown}; choose from {sorted(table)}")
        out = []
        for kind, names in (("mixed", self.mixed), ("ladder", self.ladders), ("family", self.families),
                            ("robustness", self.robustness)):
            out += [EvalGroup(kind, name, i, self.seed, min_side) for name in names for i in range(n_faces)]
        return out
