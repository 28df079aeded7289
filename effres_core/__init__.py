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
    "EffRes": "pipeline",
    "ScoreResult": "pipeline",
    "FaceScore": "pipeline",
    "EffResNet": "model",
    "effective_resolution_ratio": "scoring",
    "EffectiveResolutionRatio": "scoring",
    "resize_antialiased": "degradations",
    "degrade": "degradations",
    "l2_pgd": "adversarial",
    "enhance": "enhance",
    "EnhanceResult": "enhance",
    "SharpnessLoss": "losses",
    "sharpness_score": "losses",
    "mape_loss": "losses",
    "sharpness_gradient": "guidance",
    "GuidanceWindow": "guidance",
    "srcc": "metrics",
    "pra": "metrics",
    "quick_validation": "evaluate",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'effres_core' has no attribute {name!r}")
