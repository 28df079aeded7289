"""Foreground masks for a face crop: what counts as face (skin, hair, eyes, ...) and what is background.

``bisenet``: facexlib's face parsing with the paper's background classes. ``ellipse``: the
detection-based fallback, an ellipse over the detected face and hair. ``none``: everything counts.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Callable

import numpy as np

from .faces import BISENET_WEIGHTS, FaceBox, facexlib_weight_folder, log_once, stdout_to_stderr

MASKERS = ("auto", "bisenet", "ellipse", "none")
#: CelebAMask-HQ labels of facexlib's BiSeNet that the paper treats as background:
#: background, neck, neck_l (necklace), cloth, hat.
BISENET_BACKGROUND = (0, 14, 15, 16, 18)

#: masker(crop_rgb, face_box_in_crop_coordinates) -> float32 [H, W] mask in [0, 1]
Masker = Callable[[np.ndarray, FaceBox], np.ndarray]


def ellipse_mask(height: int, width: int, face: FaceBox) -> np.ndarray:
    """An ellipse over a detected face box, stretched up for the hair: ``[height, width]`` float32 0/1."""
    cx = (face.x0 + face.x1) / 2
    cy = (face.y0 + face.y1) / 2 - 0.1 * face.height
    ax, ay = 0.62 * face.width, 0.78 * face.height
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    inside = ((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2 <= 1.0
    return inside.astype(np.float32)


def mask_ellipse(crop: np.ndarray, face: FaceBox) -> np.ndarray:
    return ellipse_mask(crop.shape[0], crop.shape[1], face)


def mask_none(crop: np.ndarray, face: FaceBox) -> np.ndarray:
    return np.ones(crop.shape[:2], dtype=np.float32)


@lru_cache(maxsize=2)
def _bisenet(device: str):
    folder = facexlib_weight_folder(BISENET_WEIGHTS)
    from facexlib.parsing import init_parsing_model

    with stdout_to_stderr():
        return init_parsing_model("bisenet", device=device, model_rootpath=str(folder))


def make_bisenet(device: str = "cpu") -> Masker:
    """facexlib BiSeNet face parsing from a weight file already on disk (never downloaded; where
    it is looked for: :func:`~effres_core.measure.faces.facexlib_weight_dirs`)."""
    net = _bisenet(str(device))

    def mask(crop: np.ndarray, face: FaceBox) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = crop.shape[:2]
        x = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255).to(device)
        x = F.interpolate(x, size=(512, 512), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
        with torch.inference_mode(), stdout_to_stderr():
            labels = net((x - mean) / std)[0].argmax(1, keepdim=True).float()
        labels = F.interpolate(labels, size=(h, w), mode="nearest")[0, 0].long().cpu().numpy()
        return (~np.isin(labels, BISENET_BACKGROUND)).astype(np.float32)

    return mask


def get_masker(name: str = "auto", device: str = "cpu", detector: str = "haar") -> tuple[Masker, str]:
    """``(masker, resolved name)``. ``auto``: BiSeNet when it loads; else the ellipse fallback
    after a real detection, or no mask when the whole image is the face (no box to fit)."""
    if name not in MASKERS:
        raise ValueError(f"unknown masker {name!r}; choose one of {MASKERS}")
    if name == "none":
        return mask_none, "none"
    if name == "ellipse":
        return mask_ellipse, "ellipse"
    try:
        return make_bisenet(device), "bisenet"
    except Exception as err:  # facexlib missing, or its weights not on disk
        if name == "bisenet":
            raise RuntimeError(f"BiSeNet face parsing is not available: {err}; or use masker='ellipse'") from err
        fallback = "none" if detector == "whole" else "ellipse"
        log_once(f"face mask: {fallback}; skipped bisenet: {err}", logging.WARNING)
        return (mask_none, "none") if fallback == "none" else (mask_ellipse, "ellipse")
