"""Face detection and cropping.

Detectors, best first: facexlib's RetinaFace (when facexlib is installed and its weights are on
disk or downloadable), OpenCV's Haar cascade (ships with opencv, always offline), or ``whole``
(the image is one face: for crops that are already aligned faces).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

logger = logging.getLogger("effres")

DETECTORS = ("auto", "retinaface", "haar", "whole")
#: Longest side Haar detection runs at. Faces under 6% of the shorter side are not searched for at
#: any size, so shrinking costs few faces: on the 52 faces in ../shared and examples/, 640 found
#: the same faces as 800 in 0.19 s instead of 0.25 s per image (one core).
_HAAR_MAX_SIDE = 640


@dataclass(frozen=True)
class FaceBox:
    """A face in image pixels: ``(x0, y0)`` inclusive, ``(x1, y1)`` exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float = 1.0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


Detector = Callable[[np.ndarray], list[FaceBox]]


def expand_box(box: FaceBox, height: int, width: int, margin: float) -> FaceBox:
    """Grow a face box by ``margin`` times its size on every side (hair, ears, chin), clipped to the image."""
    mx, my = box.width * margin, box.height * margin
    return FaceBox(max(0, int(box.x0 - mx)), max(0, int(box.y0 - my * 1.2)),  # more room above: hair
                   min(width, int(np.ceil(box.x1 + mx))), min(height, int(np.ceil(box.y1 + my * 0.8))), box.score)


def detect_whole(rgb: np.ndarray) -> list[FaceBox]:
    """The whole image is the face."""
    return [FaceBox(0, 0, rgb.shape[1], rgb.shape[0])]


#: OpenCV cascades are not safe to share between threads (detectMultiScale writes into the
#: classifier), so each thread loads its own: the batch scorer detects in several threads at once.
_cascades = threading.local()
_cascade_load = threading.Lock()  # loading is serialised too: one XML parse at a time


def _haar_cascade():
    if getattr(_cascades, "face", None) is None:
        with _cascade_load:
            _cascades.face = _load_face_cascade()
    return _cascades.face


def _load_face_cascade():
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no Haar cascade (removed in 5.x); install "
                           "opencv-python-headless<5, or use detector='whole' or 'retinaface'")
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its Haar cascade from {path}")
    return cascade


def detect_haar(rgb: np.ndarray) -> list[FaceBox]:
    """Frontal faces with OpenCV's Haar cascade, largest first."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, _HAAR_MAX_SIDE / max(h, w))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_side = max(24, int(0.06 * min(gray.shape)))
    found = _haar_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side))
    boxes = [FaceBox(int(x / scale), int(y / scale), min(w, int((x + bw) / scale)), min(h, int((y + bh) / scale)))
             for x, y, bw, bh in (found if len(found) else [])]
    boxes = _drop_nested(sorted(boxes, key=lambda b: b.width * b.height, reverse=True))
    # Haar fires on shoes and hands now and then: keep detections with an eye in their upper part,
    # or the largest one when no box has a visible eye (sunglasses, heavy blur).
    with_eyes = [b for b in boxes if _has_eye(rgb, b)]
    return with_eyes or boxes[:1]


def _eye_cascade():
    if getattr(_cascades, "eye", None) is None:
        import cv2

        with _cascade_load:
            _cascades.eye = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye_tree_eyeglasses.xml")
    return _cascades.eye


def _has_eye(rgb: np.ndarray, box: FaceBox) -> bool:
    import cv2

    upper = rgb[box.y0:box.y0 + int(box.height * 0.6), box.x0:box.x1]
    if upper.size == 0:
        return False
    gray = cv2.cvtColor(np.ascontiguousarray(upper), cv2.COLOR_RGB2GRAY)
    scale = 160 / max(1, gray.shape[1])  # eyes are searched at a fixed face width
    gray = cv2.resize(gray, (160, max(1, int(gray.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return len(_eye_cascade().detectMultiScale(gray, 1.1, 3, minSize=(12, 12))) > 0


def _drop_nested(boxes: list[FaceBox]) -> list[FaceBox]:
    """Drop boxes mostly inside a larger one (Haar sometimes fires on a face and a part of it)."""
    kept: list[FaceBox] = []
    for b in boxes:
        inside = False
        for k in kept:
            ix = max(0, min(b.x1, k.x1) - max(b.x0, k.x0))
            iy = max(0, min(b.y1, k.y1) - max(b.y0, k.y0))
            if ix * iy > 0.5 * b.width * b.height:
                inside = True
                break
        if not inside:
            kept.append(b)
    return kept


@lru_cache(maxsize=2)
def _retinaface(device: str):
    from facexlib.detection import init_detection_model

    return init_detection_model("retinaface_resnet50", half=False, device=device)


def make_retinaface(device: str = "cpu") -> Detector:
    """facexlib's RetinaFace (downloads its weights on first use if they are not on disk)."""
    model = _retinaface(str(device))

    def detect(rgb: np.ndarray) -> list[FaceBox]:
        import torch

        with torch.inference_mode():
            found = model.detect_faces(np.ascontiguousarray(rgb[..., ::-1]), 0.9)
        h, w = rgb.shape[:2]
        boxes = [FaceBox(max(0, int(r[0])), max(0, int(r[1])), min(w, int(r[2])), min(h, int(r[3])), float(r[4]))
                 for r in found]
        return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)

    return detect


_logged: set[str] = set()


def log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        logger.info(message)


def get_detector(name: str = "auto", device: str = "cpu") -> tuple[Detector, str]:
    """``(detector, resolved name)``; ``auto`` picks RetinaFace when it can load, else Haar."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {DETECTORS}")
    if name == "whole":
        return detect_whole, "whole"
    if name == "haar":
        return detect_haar, "haar"
    try:
        return make_retinaface(device), "retinaface"
    except Exception as err:  # facexlib missing, or its weights cannot be fetched offline
        if name == "retinaface":
            raise RuntimeError(f"RetinaFace is not available: {err}. Install facexlib (pip install "
                               f"effres[facexlib]) with network access once, or use --detector haar") from err
        log_once(f"face detector: RetinaFace unavailable ({err.__class__.__name__}), using OpenCV Haar cascade")
        return detect_haar, "haar"
