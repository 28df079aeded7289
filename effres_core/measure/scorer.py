"""``EffRes``: the user-facing scorer. Faces are found, cropped and masked, patches scored, the
median taken, and everything a user needs to trust the number comes back in a :class:`ScoreResult`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model import hub
from .faces import FaceBox, expand_box, get_detector
from .imageio import ImageLoadError, array_to_rgb, load_image, rgb_to_tensor, tensor_to_rgb_list
from .masks import get_masker
from ..model.net import EffResNet, fold_batchnorm
from .patches import scores_to_map
from .scoring import effective_resolution_ratio, patch_scores
from ..synthesis.degradations import resize_antialiased

#: Faces smaller than this (box side, px) get no ratio: the size face detailers start at.
MIN_FACE_SIZE = 48
#: Faces smaller than this (box side, px) are upscaled to it before scoring (benchmarks/bench_small_faces.py).
FACE_SIZE = 224


@dataclass
class FaceScore:
    """One face: its ``box`` (x0, y0, x1, y1) in image pixels, its ratio, how many patches counted
    (``patches_used``) and how much they disagree: ``patch_iqr``, the interquartile range of the
    kept patch scores (clipped to [0, 1]; 0 for a single patch, ``None`` when nothing was scored).
    Few patches or a wide spread make the ratio less trustworthy (README, "When to distrust a score")."""

    box: list[int]
    ratio: float | None
    patches_used: int
    reason: str | None = None
    #: how much the face was upscaled before scoring (faces smaller than ``EffRes.face_size``); the
    #: ratio is relative to the face's own pixels all the same
    upscale: float = 1.0

    patch_iqr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"box": self.box, "ratio": self.ratio, "patches_used": self.patches_used,
                "patch_iqr": self.patch_iqr, "reason": self.reason, "upscale": self.upscale}


def interquartile_range(scores: torch.Tensor) -> float:
    """``q75 - q25`` of a 1-D tensor of patch scores (linear interpolation; 0 for one score)."""
    if scores.numel() == 0:
        raise ValueError("interquartile_range needs at least one score")
    q = torch.quantile(scores.float(), torch.tensor([0.25, 0.75], device=scores.device))
    return float(q[1] - q[0])


@dataclass
class ScoreResult:
    """The score of one image.

    ``ratio`` is the effective resolution ratio y (median over the kept patches of all faces),
    ``effective_resolution`` is ``(round(y * H), round(y * W))``. When nothing could be scored,
    both are ``None`` and ``reason`` says why; ``error`` is set when the image could not be read.
    ``heatmap`` (patch scores spread over the image, NaN elsewhere) and ``mask`` are ``[H, W]``.
    """

    ratio: float | None = None
    effective_resolution: tuple[int, int] | None = None
    faces: list[FaceScore] = field(default_factory=list)
    detector: str | None = None
    masker: str | None = None
    reason: str | None = None
    error: str | None = None
    path: str | None = None
    image_size: tuple[int, int] | None = None
    heatmap: np.ndarray | None = field(default=None, repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {
            "path": self.path,
            "ratio": self.ratio,
            "effective_resolution": list(self.effective_resolution) if self.effective_resolution else None,
            "faces": [f.to_dict() for f in self.faces],
            "detector": self.detector,
            "masker": self.masker,
            "reason": self.reason,
            "error": self.error,
        }


def _is_array(x) -> bool:
    return torch.is_tensor(x) or isinstance(x, np.ndarray)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class EffRes(nn.Module):
    """Score the effective resolution of faces.

    Example:
        >>> model = EffRes.from_pretrained()               # bundled default, offline
        >>> result = model.score("portrait.jpg")
        >>> result.ratio, result.effective_resolution

    Args:
        net: the patch regressor.
        detector: ``auto`` | ``retinaface`` | ``mtcnn`` | ``haar`` | ``whole``.
        masker: ``auto`` | ``bisenet`` | ``ellipse`` | ``none``.
        n_patches: about how many patches per face (the paper's 100).
        min_foreground: share of face a patch needs to count (the paper's 0.9).
        margin: how far the face crop reaches beyond the detected box, in box sizes.
        min_face_size: faces whose box side (px) is smaller are not scored; their ``reason`` says so.
        face_size: faces smaller than this (box side, px) are upscaled to it before scoring, and
            their ratio converted back to their own pixels (see :meth:`face_upscale`).
        device: where the network runs; CUDA when available by default.
    """

    def __init__(self, net: EffResNet, detector: str = "auto", masker: str = "auto", n_patches: int = 100,
                 min_foreground: float = 0.9, margin: float = 0.5, device: str | torch.device | None = None,
                 chunk_size: int | None = None, min_face_size: int = MIN_FACE_SIZE, face_size: int = FACE_SIZE):
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        # What scoring runs: the same function with BatchNorm folded away (~1.6x faster on CPU).
        # Built once here: change ``net``'s weights afterwards and build a new EffRes.
        self.inference_net = fold_batchnorm(self.net)
        self.n_patches, self.min_foreground, self.margin, self.chunk_size = n_patches, min_foreground, margin, chunk_size
        self.detector_name, self.masker_name = detector, masker
        if not 1 <= int(min_face_size) <= int(face_size):
            raise ValueError(f"need 1 <= min_face_size <= face_size, got {min_face_size} and {face_size}")
        self.min_face_size, self.face_size = int(min_face_size), int(face_size)
        self._detect = self._mask = None
        self.to(torch.device(device) if device is not None else default_device())
        if self.device.type == "cpu":
            # oneDNN's convolutions run ~2x faster on channels-last weights (benchmarks/bench_score.py).
            self.net.to(memory_format=torch.channels_last)
            self.inference_net.to(memory_format=torch.channels_last)

    # ---- weights -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike | None = None, *, revision: str | None = None,
                        device: str | torch.device | None = None, **settings) -> "EffRes":
        """Load weights: ``None`` = the bundled default; a folder; a ``.safetensors`` file; or a Hub repo id."""
        return cls(hub.load_pretrained(model_id, revision), device=device, **settings)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        return hub.save_pretrained(self.net, folder)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        return hub.push_to_hub(self.net, repo_id, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def patch_size(self) -> int:
        return self.net.patch_size

    @property
    def chunk_size(self) -> int:
        """Patches per forward pass (bounds memory). Default: 16 on CPUs, where cache-sized batches
        ran ~1.7x faster than 64 (benchmarks/bench_score.py), and 64 on GPUs."""
        if self._chunk_size is not None:
            return self._chunk_size
        return 16 if self.device.type == "cpu" else 64

    @chunk_size.setter
    def chunk_size(self, value: int | None) -> None:
        if value is not None and int(value) < 1:
            raise ValueError(f"chunk_size must be at least 1, got {value}")
        self._chunk_size = None if value is None else int(value)

    # ---- differentiable path -----------------------------------------------------------------
    def ratio(self, images: torch.Tensor, mask: torch.Tensor | None = None, reduce: str = "median",
              clip: bool = True) -> torch.Tensor:
        """Whole-image ratio ``[B]`` of ``[B, 3, H, W]`` images in [0, 1]; keeps gradients."""
        mask = None if mask is None else mask.to(self.device)
        return effective_resolution_ratio(self.inference_net, images.to(self.device), mask,
                                          n_patches=self.n_patches, min_foreground=self.min_foreground,
                                          reduce=reduce, clip=clip, chunk_size=self.chunk_size)

    # ---- detection and masks -------------------------------------------------------------------
    def _components(self):
        if self._detect is None:
            self._detect, self.detector_resolved = get_detector(self.detector_name, str(self.device))
            self._mask, self.masker_resolved = get_masker(self.masker_name, str(self.device), self.detector_resolved)
        return self._detect, self._mask

    def _faces(self, rgb: np.ndarray):
        """Yield ``(face box, crop box, crop mask)`` per detected face, largest first."""
        detect, mask = self._components()
        h, w = rgb.shape[:2]
        for box in detect(rgb):
            crop = box if self.detector_resolved == "whole" else expand_box(box, h, w, self.margin)
            sub = rgb[crop.y0:crop.y1, crop.x0:crop.x1]
            inner = FaceBox(box.x0 - crop.x0, box.y0 - crop.y0, box.x1 - crop.x0, box.y1 - crop.y0)
            yield box, crop, mask(sub, inner)

    def face_regions(self, rgb: np.ndarray) -> list[tuple[FaceBox, FaceBox, np.ndarray]]:
        """``(face box, crop box, crop mask)`` per face of an ``[H, W, 3]`` uint8 image, largest first:
        the crops and masks :meth:`score_rgb` takes its patches from (the enhancer optimises on them)."""
        self._components()  # resolves the detector, which face_upscale reads
        return list(self._faces(rgb))

    def face_masks(self, images) -> torch.Tensor:
        """The foreground mask the scorer uses, ``[B, H, W]`` float in [0, 1], in image coordinates."""
        rgbs = self._to_rgb_list(images)
        out = []
        for rgb in rgbs:
            full = np.zeros(rgb.shape[:2], dtype=np.float32)
            for _, crop, m in self._faces(rgb):
                region = full[crop.y0:crop.y1, crop.x0:crop.x1]
                np.maximum(region, m, out=region)
            out.append(torch.from_numpy(full))
        if not out:
            return torch.zeros(0, 0, 0)
        if len({tuple(m.shape) for m in out}) > 1:
            raise ValueError("face_masks needs images of one size to stack; call it per image")
        return torch.stack(out)

    # ---- scoring -------------------------------------------------------------------------------
    @staticmethod
    def _to_rgb_list(images) -> list[np.ndarray]:
        if torch.is_tensor(images):
            return tensor_to_rgb_list(images)
        if isinstance(images, (list, tuple)):
            return [rgb for item in images for rgb in EffRes._to_rgb_list(item)]
        if isinstance(images, (str, os.PathLike)):
            return [load_image(images)]
        if isinstance(images, np.ndarray):
            return [array_to_rgb(images)]
        if hasattr(images, "convert"):  # PIL image
            from .imageio import _pil_to_rgb
            return [_pil_to_rgb(images)]
        raise TypeError(f"cannot score a {type(images).__name__}: pass a path, PIL image, array or tensor")

    def score(self, images):
        """Score one image (a :class:`ScoreResult`) or many (a list).

        ``images``: a path, a PIL image, an ``[H, W, C]`` array, a ``[B, 3, H, W]`` or ComfyUI
        ``[B, H, W, C]`` tensor (or a ``[B, H, W, C]`` array), or a list of these. A batch or a list
        gives a list, one result per image (a batch inside a list gives one per image too).

        Values follow one rule (:func:`~effres_core.measure.imageio.check_image_values`):
        integers are 0..255, floats [0, 1]; other ranges, NaN, infinities and booleans are refused.
        A refused or unreadable image never raises, in any call form: its result has ``error``
        set (saying what was wrong, e.g. the range it saw) and ``ratio`` ``None``, and the other
        images of a list or batch are scored as usual.
        """
        batch = isinstance(images, (list, tuple)) or (_is_array(images) and images.ndim == 4)
        results = [self._score_one(item) for item in (self._items(images) if batch else [images])]
        return results if batch else results[0]

    @staticmethod
    def _items(images) -> list:
        """One entry per image: list items in order, batch tensors and arrays split into their images."""
        if _is_array(images) and images.ndim == 4:
            return list(images)  # [H, W, C] / [C, H, W] items
        if isinstance(images, (list, tuple)):
            return [one for item in images for one in EffRes._items(item)]
        return [images]

    def _score_one(self, item) -> ScoreResult:
        path = str(item) if isinstance(item, (str, os.PathLike)) else None
        try:
            rgb = item if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 3 \
                and item.shape[2] == 3 else self._to_rgb_list(item)[0]
        except ImageLoadError as err:
            return ScoreResult(path=path, error=err.reason)  # the path is in the result already
        except (ValueError, TypeError) as err:
            return ScoreResult(path=path, error=str(err))
        return self.score_rgb(rgb, path=path)

    def face_side(self, box: FaceBox, crop: FaceBox) -> int:
        """The side (px) the ``min_face_size`` floor and the upscale apply to: the face box's, or
        with ``detector="whole"`` the crop's short side."""
        return min(crop.height, crop.width) if self.detector_resolved == "whole" else box.side

    def face_upscale(self, box: FaceBox, crop: FaceBox) -> float:
        """The factor k a face's crop is upscaled by before scoring (1 = not at all).

        A detected face whose side is under ``face_size`` is upscaled so that it is ``face_size``
        px: then enough 128 px patches lie mostly on the face, and each sees the face at the
        scale the model was trained on. With ``detector="whole"`` the image is the crop, and it is
        upscaled only when it is smaller than one patch."""
        if self.detector_resolved == "whole":
            return max(1.0, self.patch_size / min(crop.height, crop.width))
        return max(1.0, self.face_size / box.side)

    def _score_face(self, rgb: np.ndarray, box: FaceBox, crop: FaceBox, mask: np.ndarray, net: nn.Module,
                    device: torch.device, chunk_size: int | None):
        """Patch scores of one face relative to its own pixels, their map over the crop and the
        upscale factor k, or a string saying why the face cannot be scored.

        Upscaling by k multiplies the pixel count and adds no detail, so the model sees a ratio
        about k times smaller; scores are multiplied back by k (and capped at 1), which makes a
        small face's ratio mean the same as a large one's (benchmarks/bench_small_faces.py)."""
        if self.face_side(box, crop) < self.min_face_size:
            return (f"face {box.width}x{box.height} px is smaller than the {self.min_face_size} px floor "
                    "for scoring (min_face_size)")
        p = self.patch_size
        k = self.face_upscale(box, crop)
        x = rgb_to_tensor(rgb[crop.y0:crop.y1, crop.x0:crop.x1], device)
        m = torch.from_numpy(mask)[None, None].to(device)
        if k > 1:
            size = (max(p, round(crop.height * k)), max(p, round(crop.width * k)))
            x = resize_antialiased(x, size, "bicubic").clamp(0, 1).contiguous(memory_format=torch.channels_last)
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        if min(x.shape[-2:]) < p:
            return f"face crop {crop.height}x{crop.width} is smaller than a {p}x{p} patch"
        scores, grid = patch_scores(net, x, m, n_patches=self.n_patches,
                                    min_foreground=self.min_foreground, chunk_size=chunk_size)
        scores = (scores[0].float().clamp(0, 1) * k).clamp(max=1)  # relative to the face's own pixels
        kept = scores[~torch.isnan(scores)]
        if kept.numel() == 0:
            return "no patch is mostly face (all background)"
        face_map = scores_to_map(scores, grid)
        if k > 1:  # back to the crop's own pixels
            face_map = F.interpolate(face_map[None, None], size=(crop.height, crop.width), mode="nearest")[0, 0]
        return kept, face_map.numpy(), k

    @torch.inference_mode()
    def score_rgb(self, rgb: np.ndarray, path: str | None = None, *, runner=None) -> ScoreResult:
        """Score one ``[H, W, 3]`` uint8 RGB image.

        ``runner`` scores the patches instead of ``inference_net``: a callable ``[n, 3, p, p] -> [n]``
        with ``patch_size``, ``device`` (where patches are cut) and ``chunk_size`` (patches per call).
        :class:`~effres_core.measure.batch.BatchScorer` passes one that pools the patches of several
        images into each forward pass.
        """
        self._components()
        net, device, chunk = ((self.inference_net, self.device, self.chunk_size) if runner is None
                              else (runner, runner.device, runner.chunk_size))
        h, w = rgb.shape[:2]
        result = ScoreResult(path=path, image_size=(h, w), detector=self.detector_resolved, masker=self.masker_resolved)
        heatmap = np.full((h, w), np.nan, dtype=np.float32)
        full_mask = np.zeros((h, w), dtype=np.float32)
        kept_scores: list[torch.Tensor] = []
        for box, crop, mask in self._faces(rgb):
            region = full_mask[crop.y0:crop.y1, crop.x0:crop.x1]
            np.maximum(region, mask, out=region)
            scored = self._score_face(rgb, box, crop, mask, net, device, chunk)
            if isinstance(scored, str):
                result.faces.append(FaceScore(box.as_list(), None, 0, scored))
                continue
            kept, face_map, k = scored
            kept_scores.append(kept)
            target = heatmap[crop.y0:crop.y1, crop.x0:crop.x1]
            np.copyto(target, face_map, where=~np.isnan(face_map))
            result.faces.append(FaceScore(box.as_list(), float(kept.median()), int(kept.numel()),
                                          upscale=round(k, 3), patch_iqr=interquartile_range(kept)))
        result.heatmap, result.mask = heatmap, full_mask
        if kept_scores:
            y = float(torch.cat(kept_scores).median())
            result.ratio = y
            result.effective_resolution = (round(y * h), round(y * w))
        elif not result.faces:
            result.reason = "no face found"
        else:
            result.reason = "; ".join(f.reason for f in result.faces if f.reason)
        return result
