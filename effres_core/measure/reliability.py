"""When to distrust a score: too few patches, or patches that disagree too much.

The thresholds were read off ``benchmarks/measure_reliability.py`` for the bundled default
model on mixed folders built from the *training* faces (seen flavour, seed 1, 25 patches per
384 px crop), and confirmed on the validation faces (README, "When to distrust a score"):

* patch IQR above 0.10: on the training-face sets 60-82% of such images are within +-0.1 of the
  true factor (99% below an IQR of 0.03); on the validation faces 33-47%;
* fewer than 3 patches: the median of 1 or 2 patches lies more than 0.05 from the median of all
  the face's patches for one face in ten (0.06 on training faces, 0.07-0.085 on validation faces);
  from 3 patches on that shift is 0.04-0.05.
"""

from __future__ import annotations

#: Fewer kept patches than this: the median rests on too few samples.
MIN_PATCHES = 3
#: Interquartile range of the patch scores above this: the face's patches disagree (mixed sharpness,
#: occlusion, background in the patches, or an image the model does not read well).
MAX_PATCH_IQR = 0.10


def face_warning(face, min_patches: int = MIN_PATCHES, max_iqr: float = MAX_PATCH_IQR) -> str | None:
    """Why one :class:`~effres_core.measure.scorer.FaceScore` should not be trusted, or ``None``."""
    if face.ratio is None:
        return None
    reasons = []
    if face.patches_used < min_patches:
        reasons.append(f"only {face.patches_used} patch{'es' if face.patches_used != 1 else ''}")
    if face.patch_iqr is not None and face.patch_iqr > max_iqr:
        reasons.append(f"patch IQR {face.patch_iqr:.2f}")
    return ", ".join(reasons) or None


def score_warning(result, min_patches: int = MIN_PATCHES, max_iqr: float = MAX_PATCH_IQR) -> str | None:
    """Why a :class:`~effres_core.measure.scorer.ScoreResult` should not be trusted, or ``None``:
    the warnings of its scored faces, joined."""
    warnings = [w for w in (face_warning(f, min_patches, max_iqr) for f in result.faces) if w]
    return "; ".join(warnings) or None
