"""The effective-resolution regressor: a torchvision backbone, global average pooling, one linear unit.

The network takes RGB patches in [0, 1] (ImageNet normalisation happens inside) and returns one
unclipped number per patch: the predicted effective resolution ratio. Clipping to [0, 1] is the
caller's job, because training needs the raw output.
"""

from __future__ import annotations

import torch
from torch import nn

from .calibration import MonotoneMap

BACKBONES = ("mobilenet_v2", "resnet50")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _build_backbone(name: str, imagenet_weights: bool) -> tuple[nn.Module, int]:
    """Return (feature extractor ending in [B, C, h, w], C) for a torchvision backbone."""
    if name == "mobilenet_v2" and not imagenet_weights:  # torchvision's layers, without importing it
        from .mobilenet import mobilenet_v2_features

        return mobilenet_v2_features()
    import torchvision

    if name == "mobilenet_v2":
        weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1 if imagenet_weights else None
        net = torchvision.models.mobilenet_v2(weights=weights)
        return net.features, net.last_channel
    if name == "resnet50":
        weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2 if imagenet_weights else None
        net = torchvision.models.resnet50(weights=weights)
        features = nn.Sequential(*(m for n, m in net.named_children() if n not in ("avgpool", "fc")))
        return features, net.fc.in_features
    raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")


class EffResNet(nn.Module):
    """Regress the effective resolution ratio of image patches.

    Args:
        backbone: ``"mobilenet_v2"`` (light, our default) or ``"resnet50"`` (the paper's).
        patch_size: side of the square patches the model was trained on (128 or 256).
        width: channel width multiplier for a tiny random test model; 1.0 for real models.

    Shape:
        input ``[B, 3, H, W]`` float RGB in [0, 1]; output ``[B]`` unclipped ratios (through the
        monotone calibration when one is set, see :meth:`set_calibration`).

    Example:
        >>> net = EffResNet("mobilenet_v2", patch_size=64)
        >>> net(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2])
    """

    def __init__(self, backbone: str = "mobilenet_v2", patch_size: int = 128, width: float = 1.0):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
        if patch_size < 16:
            raise ValueError(f"patch_size must be at least 16, got {patch_size}")
        self.config = {"backbone": backbone, "patch_size": int(patch_size), "width": float(width)}
        if width == 1.0:
            self.features, channels = _build_backbone(backbone, imagenet_weights=False)
        else:
            self.features, channels = _tiny_features(width)
        self.head = nn.Linear(channels, 1)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # Start near the middle of the label range so early MAPE gradients are sane.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.constant_(self.head.bias, 0.5)
        self.calibration: MonotoneMap | None = None

    def set_calibration(self, calibration: dict | None) -> "EffResNet":
        """Map the head's output through a monotone curve (``{"x": [...], "y": [...]}`` knots, see
        :mod:`effres_core.model.calibration`), or remove it with ``None``. The knots go into
        ``config["calibration"]``, so :func:`~effres_core.model.hub.save_pretrained` keeps them."""
        if calibration is None:
            self.calibration = None
            self.config.pop("calibration", None)
            return self
        mapping = MonotoneMap(calibration["x"], calibration["y"]).to(self.head.weight.device)
        self.calibration = mapping
        self.config["calibration"] = {**{k: v for k, v in calibration.items() if k not in ("x", "y")},
                                      **mapping.to_config()}
        return self

    @property
    def patch_size(self) -> int:
        return self.config["patch_size"]

    @property
    def backbone(self) -> str:
        return self.config["backbone"]

    @classmethod
    def from_imagenet(cls, backbone: str = "mobilenet_v2", patch_size: int = 128) -> "EffResNet":
        """A fresh model whose backbone starts from torchvision's ImageNet weights.

        Uses torchvision's weights API, so it honours ``TORCH_HOME`` (offline when the file is there).
        """
        model = cls(backbone, patch_size)
        features, _ = _build_backbone(backbone, imagenet_weights=True)
        model.features.load_state_dict(features.state_dict())
        return model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected [B, 3, H, W] RGB images, got shape {tuple(images.shape)}")
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        x = self.features(x)
        x = x.mean(dim=(2, 3))
        out = self.head(x).squeeze(1)
        return out if self.calibration is None else self.calibration(out)



def _tiny_features(width: float) -> tuple[nn.Module, int]:
    """A small conv net for fast tests; ``width`` scales its channels."""
    c = max(4, int(32 * width))
    layers = nn.Sequential(
        nn.Conv2d(3, c, 3, stride=2, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
        nn.BatchNorm2d(2 * c),
        nn.ReLU(),
    )
    return layers, 2 * c


def fold_batchnorm(net: EffResNet) -> EffResNet:
    """A frozen inference copy of ``net`` with each BatchNorm folded into the convolution before it.

    In eval mode BatchNorm is an affine map, so folding it into the convolution's weights changes
    neither the outputs nor their gradients with respect to the input (up to float rounding); it
    saves the separate BatchNorm pass, about a third of MobileNetV2's CPU time on 128 px patches
    (benchmarks/bench_score.py). ``net`` itself is left untouched, so it can still be trained or
    saved. A backbone torch.fx cannot trace is copied unfolded.
    """
    import copy

    folded = copy.deepcopy(net).eval()
    if not _fold_sequential_pairs(folded.features):  # a BatchNorm not right after its conv: trace it
        from torch.fx.experimental.optimization import fuse

        folded = copy.deepcopy(net).eval()
        try:
            folded.features = fuse(folded.features)
        except Exception:  # noqa: BLE001 - an untraceable custom backbone still works, just unfolded
            pass
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


def _fold_sequential_pairs(module: nn.Module) -> bool:
    """Fold every BatchNorm2d that directly follows a Conv2d inside an ``nn.Sequential`` into that
    conv (the BatchNorm becomes ``Identity``), in place; True when no BatchNorm is left. Covers
    MobileNetV2 without tracing it (tracing doubled the folding time, benchmarks/bench_startup.py)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def scoring_net(model: nn.Module) -> nn.Module:
    """The patch regressor to score or differentiate with, given an ``EffRes`` or a bare network:
    an ``EffRes``'s BatchNorm-folded ``inference_net`` (same function, less work), else its
    ``net``, else ``model`` itself."""
    for name in ("inference_net", "net"):
        net = getattr(model, name, None)
        if isinstance(net, nn.Module):
            return net
    return model
