import numpy as np
import pytest
import torch

from effres_core.synthesis import nuisance
from effres_core.synthesis.nuisance import TRAINING_NUISANCES, apply_nuisance, random_nuisances


def _images(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 32, 40, generator=g)


@pytest.mark.parametrize("name", TRAINING_NUISANCES)
def test_shape_dtype_range(name):
    x = _images()
    out = apply_nuisance(x, name, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()
    assert not torch.equal(out, x)  # each nuisance does something


@pytest.mark.parametrize("name", TRAINING_NUISANCES)
def test_same_seed_same_result(name):
    x = _images()
    a = apply_nuisance(x, name, np.random.default_rng(7))
    b = apply_nuisance(x, name, np.random.default_rng(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", TRAINING_NUISANCES)
def test_label_free(name):
    """Nuisances return only images: the effective resolution label is left to the caller, unchanged."""
    out = apply_nuisance(_images(), name, np.random.default_rng(1))
    assert torch.is_tensor(out)


def test_grayscale_equal_channels_and_jpeg_quality():
    rng = np.random.default_rng(0)
    g = nuisance.grayscale(_images(), rng)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    x = _images()
    worse = (nuisance.jpeg(x, np.random.default_rng(0), quality=10) - x).abs().mean()
    better = (nuisance.jpeg(x, np.random.default_rng(0), quality=95) - x).abs().mean()
    assert better < worse


def test_noise_keeps_the_mean_roughly():
    x = torch.full((1, 3, 64, 64), 0.5)
    out = nuisance.gaussian_noise(x, np.random.default_rng(3))
    assert abs(out.mean().item() - 0.5) < 0.02 and out.std() > 0


def test_random_nuisances():
    x = _images()
    same, names = random_nuisances(x, np.random.default_rng(0), probability=0.0)
    assert same is x and names == []
    out, names = random_nuisances(x, np.random.default_rng(0), probability=1.0, max_count=2)
    assert 1 <= len(names) <= 2 and len(set(names)) == len(names)
    assert set(names) <= set(TRAINING_NUISANCES) and out.shape == x.shape
    _, only = random_nuisances(x, np.random.default_rng(0), probability=1.0, names=("tone",), max_count=3)
    assert only == ["tone"]


def test_unknown_nuisance():
    with pytest.raises(ValueError, match="unknown nuisance"):
        apply_nuisance(_images(), "vignette", np.random.default_rng(0))
