"""Face detection and cropping.

Detectors: ``mtcnn`` (MTCNN in plain torch with its weights shipped in the package: offline, any
OpenCV or none), ``retinaface`` (facexlib's RetinaFace, only when facexlib is installed and its
weight file is already on disk: nothing is downloaded), ``haar`` (OpenCV's Haar cascade with an
eye check; OpenCV 4 only, 5.x removed it) and ``whole`` (the image is one face: for crops that
already are faces). ``auto`` takes the first of retinaface, mtcnn, haar that loads and says once,
on stderr, which one it chose and why it skipped the ones before it.

Which detector is the default was decided by measurement: ``benchmarks/bench_detection.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

logger = logging.getLogger("effres")

DETECTORS = ("auto", "retinaface", "mtcnn", "haar", "whole")
#: Smallest face side (px) the detectors search for: below the scorer's 48 px floor, so faces at the
#: floor are found reliably and those just under it are reported with a reason instead of missed.
SEARCH_MIN_FACE = 40
#: Face probability each MTCNN stage needs. On the detection set of benchmarks/bench_detection.py
#: every face >= 48 px passes even 0.99 at the last stage; false faces on the dev split (training
#: identities) fell from 7 in 59 images at MTCNN's usual 0.7 to 2 at 0.95, which leaves a margin
#: for blurrier faces than the set holds.
MTCNN_THRESHOLDS = (0.6, 0.7, 0.95)
#: Longest side Haar detection runs at (faces under 6% of the shorter side are not searched for).
_HAAR_MAX_SIDE = 640
#: facexlib's weight files, by what they are for.
RETINAFACE_WEIGHTS = "detection_Resnet50_Final.pth"
BISENET_WEIGHTS = "parsing_bisenet.pth"


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

    @property
    def side(self) -> int:
        """The longer side: the face size the scorer's floor and upscaling refer to."""
        return max(self.width, self.height)

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


Detector = Callable[[np.ndarray], list[FaceBox]]


def expand_box(box: FaceBox, height: int, width: int, margin: float) -> FaceBox:
    """Grow a face box by ``margin`` times its size on every side (hair, ears, chin), clipped to the image."""
    mx, my = box.width * margin, box.height * margin
    return FaceBox(max(0, int(box.x0 - mx)), max(0, int(box.y0 - my * 1.2)),  # more room above: hair
                   min(width, int(np.ceil(box.x1 + mx))), min(height, int(np.ceil(box.y1 + my * 0.8))), box.score)


def _clip_boxes(rows, height: int, width: int) -> list[FaceBox]:
    """``(x0, y0, x1, y1, score)`` rows -> integer boxes inside the image, largest first; empty ones dropped."""
    boxes = []
    for x0, y0, x1, y1, score in rows:
        b = FaceBox(max(0, int(round(x0))), max(0, int(round(y0))), min(width, int(round(x1))),
                    min(height, int(round(y1))), float(score))
        if b.width > 0 and b.height > 0:
            boxes.append(b)
    return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)


def detect_whole(rgb: np.ndarray) -> list[FaceBox]:
    """The whole image is the face."""
    return [FaceBox(0, 0, rgb.shape[1], rgb.shape[0])]


# ---- MTCNN (the default) -----------------------------------------------------------------------
def make_mtcnn(device: str = "cpu", min_face: float = SEARCH_MIN_FACE) -> Detector:
    """MTCNN with the shipped weights (``effres_core/measure/weights/mtcnn.safetensors``).

    It searches an image pyramid for faces from ``min_face`` px up to the whole image, so small
    faces in large images are found without tiling."""
    import torch

    from .mtcnn import load_mtcnn

    nets = load_mtcnn(str(device))

    def detect(rgb: np.ndarray) -> list[FaceBox]:
        owned = np.require(rgb, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])  # torch wants writable memory
        image = torch.from_numpy(owned).to(nets.pnet.conv1.weight.device).permute(2, 0, 1)
        rows = nets(image, min_face=min_face, thresholds=MTCNN_THRESHOLDS).cpu().tolist()
        return _clip_boxes(rows, *rgb.shape[:2])

    return detect


# ---- Haar (OpenCV 4 only) ----------------------------------------------------------------------
def haar_unavailable() -> str | None:
    """Why OpenCV's Haar cascade cannot run here (None when it can)."""
    try:
        import cv2
    except Exception as err:  # noqa: BLE001 - a broken cv2 install raises all sorts
        return f"OpenCV does not import ({err.__class__.__name__}: {err})"
    if not hasattr(cv2, "CascadeClassifier"):
        return f"OpenCV {getattr(cv2, '__version__', '?')} has no Haar cascade (removed in 5.x)"
    if not hasattr(cv2, "data") or not hasattr(cv2.data, "haarcascades"):
        return f"OpenCV {getattr(cv2, '__version__', '?')} ships no cascade files (cv2.data)"
    return None


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

    why = haar_unavailable()
    if why:
        raise RuntimeError(f"{why}; use detector='mtcnn' (bundled, needs no OpenCV) or 'whole'")
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


# ---- facexlib (RetinaFace, and BiSeNet in masks.py): local weights only ------------------------
def effres_home() -> Path:
    """``$EFFRES_HOME``, else ``~/.cache/effres``: where effres looks for optional weight files."""
    return Path(os.environ.get("EFFRES_HOME") or Path.home() / ".cache" / "effres")


def facexlib_weight_dirs() -> list[Path]:
    """Folders searched for facexlib's weight files, in order: ``$EFFRES_HOME/facexlib``, facexlib's
    own ``model_rootpath`` default (``facexlib/weights`` in site-packages), and ComfyUI's
    ``models/facexlib`` and ``models/facedetection`` when running inside ComfyUI."""
    dirs = [effres_home() / "facexlib"]
    spec = importlib.util.find_spec("facexlib")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "weights")
    folder_paths = sys.modules.get("folder_paths")  # ComfyUI's module, only when ComfyUI runs us
    models_dir = getattr(folder_paths, "models_dir", None)
    if models_dir:
        dirs += [Path(models_dir) / "facexlib", Path(models_dir) / "facedetection"]
    return dirs


def find_facexlib_weight(filename: str) -> Path | None:
    """The first ``filename`` found in :func:`facexlib_weight_dirs`, or None."""
    for folder in facexlib_weight_dirs():
        if (folder / filename).is_file():
            return folder / filename
    return None


def facexlib_unavailable(filename: str) -> str | None:
    """Why a facexlib model cannot load offline (None when facexlib and its weight file are there)."""
    if importlib.util.find_spec("facexlib") is None:
        return "facexlib is not installed (pip install 'effres[facexlib]')"
    if find_facexlib_weight(filename) is None:
        where = ", ".join(str(d) for d in facexlib_weight_dirs())
        return (f"its weight file {filename} is not on disk (effres never downloads it); "
                f"put it in {effres_home() / 'facexlib'} (or $EFFRES_HOME/facexlib); searched: {where}")
    return None


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send third-party prints (facexlib's download and progress lines) to stderr, so that
    ``effres score --json`` / ``--csv -`` keep stdout for their output alone."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def facexlib_weight_folder(filename: str) -> Path:
    """The folder holding facexlib's ``filename``, to pass as its ``model_rootpath``; a
    ``RuntimeError`` saying why (see :func:`facexlib_unavailable`) when it cannot load offline."""
    why = facexlib_unavailable(filename)
    if why:
        raise RuntimeError(why)
    return find_facexlib_weight(filename).parent


@lru_cache(maxsize=2)
def _retinaface(device: str):
    folder = facexlib_weight_folder(RETINAFACE_WEIGHTS)
    from facexlib.detection import init_detection_model

    with stdout_to_stderr():
        return init_detection_model("retinaface_resnet50", half=False, device=device, model_rootpath=str(folder))


def make_retinaface(device: str = "cpu") -> Detector:
    """facexlib's RetinaFace from a weight file already on disk (see :func:`facexlib_weight_dirs`)."""
    model = _retinaface(str(device))

    def detect(rgb: np.ndarray) -> list[FaceBox]:
        import torch

        with torch.inference_mode(), stdout_to_stderr():
            found = model.detect_faces(np.ascontiguousarray(rgb[..., ::-1]), 0.9)
        return _clip_boxes([r[:5] for r in found], *rgb.shape[:2])

    return detect


# ---- choosing one ------------------------------------------------------------------------------
_logged: set[str] = set()


def log_once(message: str, level: int = logging.INFO) -> None:
    if message not in _logged:
        _logged.add(message)
        logger.log(level, message)


def get_detector(name: str = "auto", device: str = "cpu") -> tuple[Detector, str]:
    """``(detector, resolved name)``. ``auto``: RetinaFace when facexlib and its weights are on disk,
    else the bundled MTCNN, else Haar; it logs its choice and what it skipped once, as a warning
    so that it reaches stderr without any logging set-up."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {DETECTORS}")
    if name == "whole":
        return detect_whole, "whole"
    makers = {"retinaface": make_retinaface, "mtcnn": make_mtcnn}
    if name in makers:
        try:
            return makers[name](device), name
        except Exception as err:
            raise RuntimeError(f"face detector {name!r} is not available: {err}") from err
    if name == "haar":
        _haar_cascade()  # a clear error now rather than at the first image
        return detect_haar, "haar"
    skipped = []
    for candidate in ("retinaface", "mtcnn"):
        try:
            detector = makers[candidate](device)
        except Exception as err:  # noqa: BLE001 - any failure means: try the next one
            skipped.append(f"{candidate}: {err}")
            continue
        note = f"; skipped {'; '.join(skipped)}" if skipped else ""
        log_once(f"face detector: {candidate}{note}", logging.WARNING)
        return detector, candidate
    try:
        _haar_cascade()
    except Exception as err:
        raise RuntimeError("no face detector could load: " + "; ".join(skipped + [f"haar: {err}"])) from err
    log_once(f"face detector: haar (OpenCV cascade); skipped {'; '.join(skipped)}", logging.WARNING)
    return detect_haar, "haar"
