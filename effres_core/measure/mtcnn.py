"""MTCNN face detection (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", 2016) in plain torch, so face detection needs neither OpenCV's Haar
cascade (gone in OpenCV 5) nor a download.

Three small networks run as a cascade: P-Net proposes face windows over an image pyramid, R-Net
and O-Net re-score and refine them on 24 and 48 px crops. The weights (0.5 M parameters, 2 MB)
ship in ``weights/mtcnn.safetensors``; where they come from and their licence (MIT):
``weights/MTCNN_WEIGHTS.md``. The networks and the cascade below are this project's own code.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = Path(__file__).with_name("weights") / "mtcnn.safetensors"
#: P-Net's window: a face this many pixels tall fills it.
_PNET_WINDOW = 12


class PNet(nn.Module):
    """Proposal net, fully convolutional: ``[B, 3, H, W]`` -> face probability ``[B, H', W']`` and
    box offsets ``[B, 4, H', W']`` for 12 px windows at stride 2."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net on ``[N, 3, 24, 24]`` crops -> probability ``[N]``, box offsets ``[N, 4]``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        # The weights come from Caffe, which flattened feature maps width-major.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_1(x).softmax(1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net on ``[N, 3, 48, 48]`` crops -> probability ``[N]``, box offsets ``[N, 4]``,
    five landmarks ``[N, 10]`` (x1..x5, y1..y5 as shares of the box)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense6_1(x).softmax(1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125  # the range the networks were trained on: about [-1, 1]


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow ``[N, 4]`` boxes to squares around their centres (the crops the next stage expects)."""
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def _refine(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply a stage's ``[N, 4]`` offsets, given as shares of box width and height."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes + offsets * torch.stack([w, h, w, h], 1)


def _octaves(image: torch.Tensor) -> list[torch.Tensor]:
    """``image`` and its 2x, 4x, ... area-averaged reductions, down to about one P-Net window."""
    levels = [image]
    while min(levels[-1].shape[-2:]) >= 4 * _PNET_WINDOW:
        levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    return levels


def _crops(octaves: list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 4]`` boxes resampled to ``[N, 3, size, size]`` (zeros outside the image), each read
    from the octave where it is 1-2x ``size``, so no crop aliases and none costs much."""
    from torchvision.ops import roi_align

    out = boxes.new_empty(len(boxes), 3, size, size)
    side = (boxes[:, 2] - boxes[:, 0]).clamp(min=1)
    level = torch.floor(torch.log2(side / size)).clamp(0, len(octaves) - 1).long()
    for j in level.unique().tolist():
        idx = (level == j).nonzero().flatten()
        out[idx] = roi_align(octaves[j], [boxes[idx] / 2 ** j], output_size=size, spatial_scale=1.0,
                             sampling_ratio=2, aligned=True)
    return _normalise(out)


def _suppress_contained(boxes: torch.Tensor, scores: torch.Tensor, overlap: float = 0.7) -> torch.Tensor:
    """Indices of boxes kept after dropping any that lies mostly (``overlap`` of the smaller box)
    inside a higher-scoring kept one; sorted by score."""
    order = scores.argsort(descending=True)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    for i in order.tolist():
        if kept:
            k = torch.tensor(kept)
            iw = (torch.minimum(boxes[i, 2], boxes[k, 2]) - torch.maximum(boxes[i, 0], boxes[k, 0])).clamp(min=0)
            ih = (torch.minimum(boxes[i, 3], boxes[k, 3]) - torch.maximum(boxes[i, 1], boxes[k, 1])).clamp(min=0)
            if bool((iw * ih > overlap * torch.minimum(area[i], area[k])).any()):
                continue
        kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


def mtcnn_detect(nets: "MTCNN", image: torch.Tensor, min_face: float = 40.0,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.95), factor: float = 0.709,
                 chunk_size: int = 512) -> torch.Tensor:
    """Faces in one image: ``[N, 5]`` rows of ``x0, y0, x1, y1, probability``, best first.

    Args:
        nets: the three networks (:class:`MTCNN`).
        image: ``[3, H, W]`` RGB float in 0..255 (the range MTCNN was trained on).
        min_face: the smallest face side searched for, in pixels; the pyramid starts where such a
            face fills P-Net's 12 px window, so smaller values cost more.
        thresholds: the face probability each stage needs (P-Net, R-Net, O-Net).
        factor: the scale step of the pyramid.
        chunk_size: crops per R-Net / O-Net pass (bounds memory).

    Example:
        >>> nets = MTCNN.from_file()
        >>> mtcnn_detect(nets, torch.full((3, 64, 64), 128.0)).shape
        torch.Size([0, 5])
    """
    from torchvision.ops import nms

    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] RGB image, got shape {tuple(image.shape)}")
    if min_face < _PNET_WINDOW:
        raise ValueError(f"min_face must be at least {_PNET_WINDOW} px, got {min_face}")
    empty = image.new_zeros(0, 5)
    image = image.float()[None]
    h, w = image.shape[-2:]
    octaves = _octaves(image)

    # Stage 1: P-Net over the pyramid, one proposal per window above threshold.
    boxes, scores, offsets = [], [], []
    scale = _PNET_WINDOW / float(min_face)
    while min(h, w) * scale >= _PNET_WINDOW:
        j = max(0, min(len(octaves) - 1, int(math.floor(math.log2(1 / scale)))))
        level = F.interpolate(octaves[j], size=(math.ceil(h * scale), math.ceil(w * scale)), mode="bilinear",
                              antialias=True, align_corners=False)
        prob, offset = nets.pnet(_normalise(level))
        ys, xs = torch.nonzero(prob[0] > thresholds[0], as_tuple=True)
        if ys.numel():
            b = torch.stack([2 * xs + 1, 2 * ys + 1, 2 * xs + _PNET_WINDOW, 2 * ys + _PNET_WINDOW], 1).float() / scale
            s = prob[0, ys, xs]
            keep = nms(b, s, 0.5)
            boxes.append(b[keep])
            scores.append(s[keep])
            offsets.append(offset[0, :, ys[keep], xs[keep]].T)
        scale *= factor
    if not boxes:
        return empty
    b, s, o = torch.cat(boxes), torch.cat(scores), torch.cat(offsets)
    keep = nms(b, s, 0.7)
    b = _square(_refine(b[keep], o[keep]))

    # Stages 2 and 3: re-score and refine on 24 and 48 px crops.
    for stage, size in ((1, 24), (2, 48)):
        net = nets.rnet if stage == 1 else nets.onet
        outs = [net(_crops(octaves, b[i:i + chunk_size], size)) for i in range(0, len(b), chunk_size)]
        s = torch.cat([out[0] for out in outs])
        o = torch.cat([out[1] for out in outs])
        ok = s > thresholds[stage]
        b, s, o = b[ok], s[ok], o[ok]
        if not len(b):
            return empty
        if stage == 1:
            keep = nms(b, s, 0.7)
            b = _square(_refine(b[keep], o[keep]))
        else:
            b = _refine(b, o)
    keep = _suppress_contained(b, s)
    return torch.cat([b[keep], s[keep, None]], 1)


class MTCNN(nn.Module):
    """The three MTCNN networks; ``forward`` is :func:`mtcnn_detect`."""

    def __init__(self):
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()

    @classmethod
    def from_file(cls, path: str | Path = WEIGHTS) -> "MTCNN":
        """The networks with the shipped weights (or another file with the same keys), in eval mode."""
        from safetensors.torch import load_file

        nets = cls()
        nets.load_state_dict(load_file(str(path)), strict=True)
        for p in nets.parameters():
            p.requires_grad_(False)
        return nets.eval()

    @torch.inference_mode()
    def forward(self, image: torch.Tensor, min_face: float = 40.0,
                thresholds: tuple[float, float, float] = (0.6, 0.7, 0.95)) -> torch.Tensor:
        return mtcnn_detect(self, image, min_face=min_face, thresholds=thresholds)


@lru_cache(maxsize=2)
def load_mtcnn(device: str = "cpu") -> MTCNN:
    """The shipped MTCNN on ``device``, loaded once per device."""
    return MTCNN.from_file().to(device)
