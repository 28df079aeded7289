"""From an image to a number: image loading, face detection and masks, patches, the ``EffRes`` scorer,
heatmaps and selection by score."""

from .faces import DETECTORS, FaceBox, get_detector
from .heatmap import render_result, save_heatmap
from .imageio import IMAGE_SUFFIXES, ImageLoadError, find_images, load_image
from .masks import MASKERS, get_masker
from .patches import PatchGrid, extract_patches, patch_grid
from .scorer import EffRes, FaceScore, ScoreResult
from .scoring import EffectiveResolutionRatio, effective_resolution_ratio, patch_scores
from .selection import Selection, select

__all__ = [
    "DETECTORS", "EffRes", "EffectiveResolutionRatio", "FaceBox", "FaceScore", "IMAGE_SUFFIXES", "ImageLoadError",
    "MASKERS", "PatchGrid", "ScoreResult", "Selection", "effective_resolution_ratio", "extract_patches", "find_images",
    "get_detector", "get_masker", "load_image", "patch_grid", "patch_scores", "render_result", "save_heatmap", "select",
]
