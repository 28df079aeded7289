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

import io
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..synthesis.degradations import KERNELS, resample_down_up, resize_antialiased

logger = logging.getLogger("effres")

Image4 = torch.Tensor  # [1, 3, H, W] float in [0, 1]
Resizer = Callable[[Image4, tuple[int, int]], Image4]
Nuisance = Callable[[Image4, np.random.Generator], Image4]

LADDER_FACTORS = (1.0, 1 / 1.5, 1 / 2, 1 / 3, 1 / 4, 1 / 6, 1 / 8)
FLAVOURS = ("seen", "unseen")


# --------------------------------------------------------------------------------------- resizers

def _to_hwc(x: Image4) -> np.ndarray:
    return np.ascontiguousarray(x[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32))


def _from_hwc(a: np.ndarray) -> Image4:
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def _torch_resizer(kernel: str) -> Resizer:
    return lambda x, size: resize_antialiased(x, size, kernel)


def _cv2_resizer(flag_name: str) -> Resizer:
    def resize(x: Image4, size: tuple[int, int]) -> Image4:
        import cv2

        # OpenCV never antialiases except INTER_AREA: downscales alias, as in much real software.
        return _from_hwc(cv2.resize(_to_hwc(x), (size[1], size[0]), interpolation=getattr(cv2, flag_name)))
    return resize


def _pil_resizer(filter_name: str) -> Resizer:
    def resize(x: Image4, size: tuple[int, int]) -> Image4:
        from PIL import Image

        flt = getattr(Image.Resampling, filter_name)
        # Mode "F" keeps float precision; Pillow resizes one channel at a time.
        chans = [np.asarray(Image.fromarray(c).resize((size[1], size[0]), flt)) for c in _to_hwc(x).transpose(2, 0, 1)]
        return _from_hwc(np.stack(chans, axis=2))
    return resize


#: The training's resizers: antialiased, the eight kernels of the recipe.
SEEN_RESIZERS: dict[str, Resizer] = {k: _torch_resizer(k) for k in KERNELS}
#: Resizers of other libraries. OpenCV's cubic is Keys with a = -0.75 and, like its linear and
#: Lanczos-4, does not antialias; Pillow's Hamming window is in no training kernel.
UNSEEN_RESIZERS: dict[str, Resizer] = {
    "opencv_cubic": _cv2_resizer("INTER_CUBIC"),
    "opencv_linear": _cv2_resizer("INTER_LINEAR"),
    "opencv_lanczos4": _cv2_resizer("INTER_LANCZOS4"),
    "opencv_area": _cv2_resizer("INTER_AREA"),
    "pillow_hamming": _pil_resizer("HAMMING"),
    "pillow_box": _pil_resizer("BOX"),
}
#: Used in the ``unseen`` mixed folders. Area/box are left out there: downscaling by area
#: averaging is the training's ``area`` kernel under another name.
UNSEEN_DOWN = ("opencv_cubic", "opencv_linear", "opencv_lanczos4", "pillow_hamming")
#: Upscaling never antialiases, so OpenCV's linear upscale is the training's bilinear: left out.
UNSEEN_UP = ("opencv_cubic", "opencv_lanczos4", "pillow_hamming")


def get_resizer(name: str) -> Resizer:
    if name in SEEN_RESIZERS:
        return SEEN_RESIZERS[name]
    if name in UNSEEN_RESIZERS:
        return UNSEEN_RESIZERS[name]
    raise ValueError(f"unknown resizer {name!r}; choose one of {sorted(SEEN_RESIZERS) + sorted(UNSEEN_RESIZERS)}")


def resample(x: Image4, factor: float, down: str, up: str) -> tuple[Image4, float]:
    """Downscale by ``factor`` with resizer ``down``, back to the original size with ``up``.

    Returns the image and its true factor (the rounded small height over the height).
    """
    return resample_down_up(x, factor, get_resizer(down), get_resizer(up))


# -------------------------------------------------------------------------------------- nuisances

def _luma(x: Image4) -> Image4:
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _torch_rng(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def shot_noise(x: Image4, rng: np.random.Generator, peak: float | None = None) -> Image4:
    """Poisson (photon) noise: ``peak`` photons at white, so dark areas get relatively more noise."""
    peak = float(peak if peak is not None else rng.uniform(40, 250))
    return (torch.poisson(x.clamp(0, 1) * peak, generator=_torch_rng(rng)) / peak).clamp(0, 1)


def salt_and_pepper(x: Image4, rng: np.random.Generator) -> Image4:
    """Isolated black and white pixels (dead/hot pixels, dust): speckle, not detail."""
    amount = rng.uniform(0.001, 0.006)
    u = torch.rand(x.shape[0], 1, *x.shape[2:], generator=_torch_rng(rng))
    out = torch.where(u < amount / 2, torch.zeros_like(x), x)
    return torch.where(u > 1 - amount / 2, torch.ones_like(x), out)


def webp(x: Image4, rng: np.random.Generator, quality: int | None = None) -> Image4:
    """Lossy WebP round trip (a different codec from training's JPEG)."""
    from PIL import Image

    q = int(quality if quality is not None else rng.integers(45, 86))
    rgb = x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=q, method=4)
    return _from_hwc(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0)


def jpeg_quality(x: Image4, quality: int) -> Image4:
    """JPEG round trip at a fixed quality (robustness ladders)."""
    from PIL import Image

    rgb = x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    return _from_hwc(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0)


def laplacian_sharpen(x: Image4, rng: np.random.Generator, amount: float | None = None) -> Image4:
    """``x - amount * Laplacian(x)`` with the 8-neighbour kernel (training sharpens by unsharp mask)."""
    amount = float(amount if amount is not None else rng.uniform(0.15, 0.45))
    k = torch.tensor([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]], dtype=x.dtype).view(1, 1, 3, 3)
    lap = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.repeat(3, 1, 1, 1), groups=3)
    return (x - amount * lap).clamp(0, 1)


def saturation(x: Image4, rng: np.random.Generator) -> Image4:
    """Desaturate or oversaturate around the luma (training shifts gains, not saturation)."""
    s = rng.choice([rng.uniform(0.3, 0.7), rng.uniform(1.3, 1.8)])
    y = _luma(x)
    return (y + s * (x - y)).clamp(0, 1)


def tone_curve(x: Image4, rng: np.random.Generator) -> Image4:
    """An S-shaped (or inverse-S) tone curve, blended in (training uses gamma/contrast instead)."""
    t = rng.uniform(0.3, 0.8) * rng.choice([-1.0, 1.0])
    s_curve = 0.5 - 0.5 * torch.cos(torch.pi * x.clamp(0, 1))
    return (x + t * (s_curve - x)).clamp(0, 1)


#: Nuisances training never applies.
UNSEEN_NUISANCES: dict[str, Nuisance] = {
    "shot_noise": shot_noise,
    "salt_and_pepper": salt_and_pepper,
    "webp": webp,
    "laplacian_sharpen": laplacian_sharpen,
    "saturation": saturation,
    "tone_curve": tone_curve,
}


def seen_nuisances() -> dict[str, Nuisance]:
    """Training's nuisances (from :mod:`effres_core.synthesis.nuisance`), by name."""
    from ..synthesis import nuisance

    return {name: (lambda x, rng, _n=name: nuisance.apply_nuisance(x, _n, rng))
            for name in nuisance.TRAINING_NUISANCES}


def nuisances_for(flavour: str) -> dict[str, Nuisance]:
    if flavour == "seen":
        return seen_nuisances()
    if flavour == "unseen":
        return dict(UNSEEN_NUISANCES)
    raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")


def quantize(x: Image4) -> Image4:
    """Round to 8 bits, as every saved image is."""
    return x.clamp(0, 1).mul(255).round().div(255)


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
