"""Shared test fixtures: tiny seeded models and small images. Keep this file small and generic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

#: Read-only shared data (present in CI at ../shared relative to the repository root).
SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_FACE = SHARED / "data" / "faces" / "val" / "real_pyfeat_0-f1-su-ph.jpg"


def make_tiny_net(seed: int = 0, patch_size: int = 32, width: float = 0.25):
    """A tiny random :class:`EffResNet` in eval mode, the same for the same seed."""
    from effres_core.model.net import EffResNet

    torch.manual_seed(seed)
    return EffResNet(patch_size=patch_size, width=width).eval()


def face_like_image(size: int = 96, seed: int = 0) -> np.ndarray:
    """A synthetic face-ish ``[size, size, 3]`` uint8 image: a textured skin ellipse with dark eyes
    and mouth on a flat background. Not a face for a detector; use with ``detector="whole"``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.empty((size, size, 3), np.float32)
    img[:] = (70, 90, 120)
    skin = ((xx - 0.5) / 0.33) ** 2 + ((yy - 0.5) / 0.43) ** 2 <= 1
    img[skin] = (215, 170, 140)
    for cx, cy, rx, ry in ((0.37, 0.42, 0.06, 0.03), (0.63, 0.42, 0.06, 0.03), (0.5, 0.7, 0.12, 0.03)):
        img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = (50, 30, 30)
    img += rng.normal(0, 8, img.shape)  # skin/pore-like texture so the patches are not flat
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def tiny_net():
    return make_tiny_net()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny model folder (``model.safetensors`` + ``config.json``)."""
    from effres_core.model import hub

    return hub.save_pretrained(make_tiny_net(), tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture
def face_rgb() -> np.ndarray:
    return face_like_image()


@pytest.fixture
def real_face_path() -> Path:
    """A real 512 px face photo from ../shared (Haar needs a real face); skips when absent."""
    if not REAL_FACE.is_file():
        pytest.skip(f"shared face data not found at {REAL_FACE}")
    return REAL_FACE


def randomise_batchnorm(net):
    """``net`` in eval mode with random BatchNorm statistics, so that folding them is not a no-op."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(c, generator=g))
            m.bias.data.copy_(torch.randn(c, generator=g))
    return net.eval()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
