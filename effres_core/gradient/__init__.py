"""Using the model's gradient: L2 PGD, sharpness losses, the face enhancer and sampling guidance."""

from .adversarial import l2_pgd
from .enhance import EnhanceResult, enhance, enhance_file
from .guidance import GuidanceWindow, sharpness_gradient, sharpness_gradient_with_score
from .losses import SharpnessLoss, mape_loss, sharpness_score

__all__ = [
    "EnhanceResult", "GuidanceWindow", "SharpnessLoss", "enhance", "enhance_file", "l2_pgd", "mape_loss",
    "sharpness_gradient", "sharpness_gradient_with_score", "sharpness_score",
]
