"""The network and its weights: ``EffResNet``, BatchNorm folding, and loading/saving (bundled, folder, Hub)."""

from .hub import (
    BUNDLED_DEFAULT,
    DEFAULT_REPO_ID,
    WeightsNotFoundError,
    load_pretrained,
    load_weights_file,
    push_to_hub,
    resolve_weights,
    save_pretrained,
)
from .net import BACKBONES, EffResNet, fold_batchnorm, scoring_net

__all__ = [
    "BACKBONES", "BUNDLED_DEFAULT", "DEFAULT_REPO_ID", "EffResNet", "WeightsNotFoundError", "fold_batchnorm",
    "load_pretrained", "load_weights_file", "push_to_hub", "resolve_weights", "save_pretrained", "scoring_net",
]
