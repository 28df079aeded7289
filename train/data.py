"""Self-supervised training samples: sharp face crops -> (prescale) -> degrade -> nuisances -> patches.

Every batch is a pure function of ``(seed, batch_index)``, so a resumed run sees exactly the
batches an uninterrupted run would, and DataLoader workers (or DDP ranks) can each build their
own share with no coordination. A batch mixes patches of many images, because patches of one
image share a label and BatchNorm would leak it (the recipe's pitfall).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from effres_core.synthesis.degradations import KERNELS, resize_antialiased
from effres_core.measure.faces import FaceBox, expand_box, get_detector
from effres_core.measure.imageio import ImageLoadError, find_images, load_image
from effres_core.measure.masks import ellipse_mask
from effres_core.synthesis.nuisance import random_nuisances

logger = logging.getLogger("effres.train")


@dataclass
class FaceSample:
    """A sharp face crop (uint8 RGB) with its foreground mask (float32 0/1)."""

    name: str
    rgb: np.ndarray
    mask: np.ndarray


def _halve(rgb: np.ndarray) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def load_faces(folder: str | Path, cache_dir: str | Path | None = None, halve_above: int = 1024,
               margin: float = 0.5, min_side: int = 128, max_crop_side: int = 0,
               detector: str = "haar") -> tuple[list[FaceSample], list[str]]:
    """Find, crop and mask the largest face of every image under ``folder`` (recursive).

    Sources whose short side is at least ``halve_above`` are halved first: the shipped JPEGs are
    not pixel-sharp at full size. With ``max_crop_side``, a face crop whose short side is longer
    is shrunk (area filter) to that side: a camera JPEG holds little detail in its top octave, and
    labelling such a crop 1 teaches the network that soft means sharp. ``detector`` is any name
    :func:`~effres_core.measure.faces.get_detector` takes (the shipped runs used ``haar``). Crop
    boxes and masks are cached on disk keyed by file content and detector.
    Returns the faces and a list of ``"path: reason"`` for files that were skipped.
    """
    paths = find_images([folder])
    detect, _ = get_detector(detector)
    cache = Path(cache_dir) if cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    faces, skipped = [], []
    for path in paths:
        try:
            rgb = load_image(path)
        except ImageLoadError as err:
            skipped.append(str(err))
            continue
        if min(rgb.shape[:2]) >= halve_above:
            rgb = _halve(rgb)
        # Haar keys keep their old form, so existing caches stay valid.
        extra = "" if detector == "haar" else f"/{detector}"
        key = hashlib.sha1(path.read_bytes() + f"{halve_above}/{margin}{extra}".encode()).hexdigest()[:16]
        cached = cache / f"{key}.npz" if cache else None
        if cached and cached.is_file():
            data = np.load(cached)
            box, mask = data["box"].tolist(), data["mask"]
        else:
            found = detect(rgb)
            if not found:
                skipped.append(f"{path}: no face found")
                continue
            face = found[0]
            crop = expand_box(face, rgb.shape[0], rgb.shape[1], margin)
            box = [crop.x0, crop.y0, crop.x1, crop.y1]
            inner = FaceBox(face.x0 - crop.x0, face.y0 - crop.y0, face.x1 - crop.x0, face.y1 - crop.y0)
            mask = ellipse_mask(crop.height, crop.width, inner)
            if cached:
                # Write then rename: DDP ranks (or two runs) sharing a cache never read a half-written file.
                tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npz")
                np.savez_compressed(tmp, box=np.array(box), mask=mask.astype(np.uint8))
                os.replace(tmp, cached)
        x0, y0, x1, y1 = box
        crop_rgb = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        if min(crop_rgb.shape[:2]) < min_side:
            skipped.append(f"{path}: face crop {crop_rgb.shape[0]}x{crop_rgb.shape[1]} is too small")
            continue
        if max_crop_side and min(crop_rgb.shape[:2]) > max_crop_side:
            scale = max_crop_side / min(crop_rgb.shape[:2])
            size = (max(1, round(crop_rgb.shape[1] * scale)), max(1, round(crop_rgb.shape[0] * scale)))
            crop_rgb, mask = _resize_pair(crop_rgb, mask.astype(np.uint8), size)
        faces.append(FaceSample(path.name, crop_rgb, mask.astype(np.float32)))
    if not faces:
        raise RuntimeError(f"no usable face images under {folder} ({len(paths)} files; skipped: {skipped[:5]})")
    return faces, skipped


@dataclass
class SampleSettings:
    """How a training sample is made; the defaults are the paper's (Table 1)."""

    patch_size: int = 128
    stride: int = 128
    window_patches: int = 3          # degrade a window of this many patches per side, not the whole image
    patches_per_image: int = 2       # patches taken from one sample: keeps every batch mixed
    prescale_probability: float = 0.8
    prescale_height: tuple[int, int] = (256, 2048)
    degrade_probability: float = 0.9
    min_factor: float = 1 / 16
    max_factor: float = 1.0          # downscale factor f ~ U(min_factor, max_factor)
    min_foreground: float = 0.5
    nuisance_probability: float = 0.6
    kernels: tuple[str, ...] = KERNELS  # down and up resizers are each drawn from these
    random_offset: bool = True       # patch grid starts at a random offset (else at the window's corner)
    mask: bool = True                # False: every pixel counts as face (the paper's unmasked ablation)

    def __post_init__(self):
        lo, hi = self.prescale_height
        if not 0 < lo <= hi:
            raise ValueError(f"prescale_height must be [low, high] with 0 < low <= high, got {self.prescale_height}")
        if hi < self.patch_size:
            raise ValueError(f"prescale_height {self.prescale_height} ends below the patch size {self.patch_size}")
        if not 0 < self.min_factor <= self.max_factor <= 1:
            raise ValueError(f"need 0 < min_factor <= max_factor <= 1, got {self.min_factor}, {self.max_factor}")
        self.kernels = tuple(self.kernels)
        unknown = [k for k in self.kernels if k not in KERNELS]
        if not self.kernels or unknown:
            raise ValueError(f"kernels must be a non-empty list of {KERNELS}, got {list(self.kernels)}")
        if self.stride < 1 or self.window_patches < 1 or self.patches_per_image < 1:
            raise ValueError("stride, window_patches and patches_per_image must be positive")
        for name in ("prescale_probability", "degrade_probability", "min_foreground", "nuisance_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def _resize_pair(rgb: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An image (area filter down, bicubic up) and its mask (nearest) at ``size = (width, height)``."""
    import cv2

    interp = cv2.INTER_AREA if size[1] < rgb.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(rgb, size, interpolation=interp), cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def _prescale(rgb: np.ndarray, mask: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = rgb.shape[:2]
    return _resize_pair(rgb, mask, (max(1, round(w * height / h)), height))


def make_sample(face: FaceSample, rng: np.random.Generator, s: SampleSettings, nuisances: bool = True):
    """One training sample: ``(patches [k, 3, p, p], labels [k])``; ``k`` may be 0."""
    rgb, mask, base = face.rgb, face.mask, 1.0
    if not s.mask:
        mask = np.ones_like(mask)
    p = s.patch_size
    if rng.random() < s.prescale_probability:
        lo, hi = s.prescale_height
        new_h = int(rng.integers(max(lo, p), hi + 1))
        base = min(1.0, rgb.shape[0] / new_h)
        rgb, mask = _prescale(rgb, mask, new_h)
    h, w = rgb.shape[:2]
    win = min(s.window_patches * p, h, w)
    if win < p:
        return torch.zeros(0, 3, p, p), torch.zeros(0)
    # Centre the window on a random foreground pixel, so windows land on the face.
    ys, xs = np.nonzero(mask > 0.5)
    if len(ys):
        i = int(rng.integers(len(ys)))
        cy, cx = ys[i], xs[i]
    else:
        cy, cx = h // 2, w // 2
    y0 = int(np.clip(cy - win // 2, 0, h - win))
    x0 = int(np.clip(cx - win // 2, 0, w - win))
    x = torch.from_numpy(np.ascontiguousarray(rgb[y0:y0 + win, x0:x0 + win])).permute(2, 0, 1)[None].float() / 255
    m = torch.from_numpy(np.ascontiguousarray(mask[y0:y0 + win, x0:x0 + win]))[None, None].float()
    label = base
    if rng.random() < s.degrade_probability:
        f = rng.uniform(s.min_factor, s.max_factor)
        small = max(1, round(win * f))
        if small < win:
            down, up = rng.choice(s.kernels), rng.choice(s.kernels)
            x = resize_antialiased(resize_antialiased(x, (small, small), down), (win, win), up).clamp(0, 1)
            label = min(base, small / win)
    if nuisances:
        x, _ = random_nuisances(x, rng, s.nuisance_probability)
    # Patches on a grid with a random offset; keep those that are mostly face.
    span = max(1, min(s.stride, win - p + 1))
    oy, ox = (int(rng.integers(0, span)), int(rng.integers(0, span))) if s.random_offset else (0, 0)
    cands = [(yy, xx) for yy in range(oy, win - p + 1, s.stride) for xx in range(ox, win - p + 1, s.stride)
             if float(m[0, 0, yy:yy + p, xx:xx + p].mean()) >= s.min_foreground]
    if not cands:
        return torch.zeros(0, 3, p, p), torch.zeros(0)
    pick = rng.permutation(len(cands))[: s.patches_per_image]
    patches = torch.stack([x[0, :, cands[j][0]:cands[j][0] + p, cands[j][1]:cands[j][1] + p] for j in pick])
    return patches, torch.full((len(pick),), float(label))


def make_batch(faces: list[FaceSample], batch_index: int, batch_size: int, seed: int, s: SampleSettings,
               nuisances: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Micro-batch ``batch_index``: ``batch_size`` patches from many images, deterministic in its inputs."""
    rng = np.random.default_rng([seed, batch_index])
    patches, labels = [], []
    count = 0
    for _ in range(batch_size * 20):  # bounded: a source with no usable window cannot loop forever
        if count >= batch_size:
            break
        x, y = make_sample(faces[int(rng.integers(len(faces)))], rng, s, nuisances)
        patches.append(x)
        labels.append(y)
        count += len(y)
    if count < batch_size:
        raise RuntimeError("could not draw enough face patches: are the face crops smaller than a patch?")
    return torch.cat(patches)[:batch_size].contiguous(), torch.cat(labels)[:batch_size].contiguous()


class BatchStream(torch.utils.data.IterableDataset):
    """Batches ``start, start + stride, ...`` (``stride`` = number of DDP ranks) for a DataLoader.

    With ``num_workers = n``, worker ``k`` builds every n-th batch; the DataLoader's round-robin
    fetch then returns them in order, so the stream is identical for any worker count.
    """

    def __init__(self, faces, batch_size, seed, settings, start=0, rank=0, world_size=1, nuisances=True):
        super().__init__()
        self.faces, self.batch_size, self.seed, self.settings = faces, batch_size, seed, settings
        self.start, self.rank, self.world_size, self.nuisances = start, rank, world_size, nuisances

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        i = self.start + wid
        while True:
            global_index = i * self.world_size + self.rank
            # Build every batch with one thread: float sums depend on the thread count, and the stream
            # must be bit-identical for any worker count. Restore the count for the caller, so that
            # with workers=0 the training step in this same process keeps all its threads.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                batch = make_batch(self.faces, global_index, self.batch_size, self.seed, self.settings,
                                   self.nuisances)
            finally:
                torch.set_num_threads(threads)
            yield batch
            i += nw
