import numpy as np
import pytest
import torch

from effres_core.evaluation.baselines import BASELINES, high_frequency_share, jpeg_bytes_per_pixel, laplacian_variance
from effres_core.synthesis.degradations import degrade


def _texture(seed: int = 0, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=g)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_shape_and_order_on_a_ladder(name):
    fn = BASELINES[name]
    x = _texture()
    ladder = torch.cat([x] + [degrade(x, f, "bicubic")[0] for f in (0.5, 0.25)])
    scores = fn(ladder)
    assert scores.shape == (3,)
    assert torch.isfinite(scores).all()
    assert scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_bad_input(name):
    fn = BASELINES[name]
    with pytest.raises(ValueError):
        fn(torch.rand(3, 32, 32))
    with pytest.raises(TypeError):
        fn(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_non_contiguous_input(name):
    x = _texture(1, 48)
    nc = x.permute(0, 1, 3, 2)
    assert not nc.is_contiguous()
    assert torch.allclose(BASELINES[name](nc), BASELINES[name](nc.contiguous()))


def test_laplacian_variance_matches_numpy():
    x = _texture(2, 40).double()
    gray = (x[0] * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(3, 1, 1)).sum(0).numpy() * 255
    lap = gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1]
    assert laplacian_variance(x).item() == pytest.approx(lap.var(ddof=1), rel=1e-9)
    assert laplacian_variance(torch.full((1, 3, 16, 16), 0.3)).item() == pytest.approx(0.0, abs=1e-9)


def test_high_frequency_share_of_white_noise():
    # White noise spreads energy evenly: the share above 0.25 cycles/pixel is the area outside
    # the disc of radius 0.25 in the [-0.5, 0.5]^2 frequency square: 1 - pi / 16.
    g = torch.Generator().manual_seed(3)
    gray = torch.rand(4, 1, 128, 128, generator=g).expand(4, 3, 128, 128)
    share = high_frequency_share(gray)
    assert share.mean().item() == pytest.approx(1 - np.pi / 16, abs=0.03)
    assert ((share >= 0) & (share <= 1)).all()
    with pytest.raises(ValueError):
        high_frequency_share(gray, cutoff=0.9)


def test_jpeg_bytes_flat_vs_texture():
    flat = torch.full((1, 3, 128, 128), 0.5)  # big enough that the JPEG header does not dominate
    assert jpeg_bytes_per_pixel(_texture(size=128)).item() > 5 * jpeg_bytes_per_pixel(flat).item()
    with pytest.raises(ValueError):
        jpeg_bytes_per_pixel(flat, quality=0)
