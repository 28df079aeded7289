"""effres: how sharp a face image really is.

    >>> from effres_core import EffRes
    >>> model = EffRes.from_pretrained()          # the bundled default, offline
    >>> result = model.score("portrait.jpg")      # result.ratio, result.effective_resolution

Heavy or optional pieces are imported on first use, so ``import effres_core`` stays light and
never needs diffusers or ComfyUI.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "EffRes": "measure.scorer",
    "ScoreResult": "measure.scorer",
    "FaceScore": "measure.scorer",
    "EffResNet": "model.net",
    "effective_resolution_ratio": "measure.scoring",
    "EffectiveResolutionRatio": "measure.scoring",
    "resize_antialiased": "synthesis.degradations",
    "degrade": "synthesis.degradations",
    "l2_pgd": "gradient.adversarial",
    "enhance": "gradient.enhance",
    "EnhanceResult": "gradient.enhance",
    "SharpnessLoss": "gradient.losses",
    "sharpness_score": "gradient.losses",
    "mape_loss": "gradient.losses",
    "sharpness_gradient": "gradient.guidance",
    "GuidanceWindow": "gradient.guidance",
    "srcc": "evaluation.metrics",
    "pra": "evaluation.metrics",
    "quick_validation": "evaluation.runner",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'effres_core' has no attribute {name!r}")
