"""MobileNetV2's feature extractor (Sandler et al., CVPR 2018) built from torch alone.

The same layers, order and parameter names as ``torchvision.models.mobilenet_v2().features``, so
state dicts load either way (``tests/test_model.py`` checks outputs against torchvision's). It
exists for start-up time: importing torchvision pulls in ``torch._dynamo`` through
``torchvision.ops``: building the net took 13 s with it and 1 s without on the loaded 2-core
machine (``benchmarks/bench_startup.py``); scoring with the bundled model never needs it.
"""

from __future__ import annotations

import torch
from torch import nn

#: (expansion t, output channels c, repeats n, first stride s) per stage: the paper's Table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution without bias, BatchNorm, ReLU6: children ``0``, ``1``, ``2``."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand (1x1, unless t = 1), depthwise 3x3, project (1x1, linear); residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = int(round(cin * expansion))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [conv_bn_relu6(cin, hidden, kernel=1)] if expansion != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def mobilenet_v2_features() -> tuple[nn.Sequential, int]:
    """``(features, 1280)``: stem, 17 inverted residual blocks, the last 1x1 convolution; randomly
    initialised like torchvision's (Kaiming normal, fan out; BatchNorm at identity)."""
    layers: list[nn.Module] = [conv_bn_relu6(3, STEM_CHANNELS, stride=2)]
    cin = STEM_CHANNELS
    for t, c, n, s in STAGES:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers.append(conv_bn_relu6(cin, LAST_CHANNELS, kernel=1))
    features = nn.Sequential(*layers)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return features, LAST_CHANNELS
