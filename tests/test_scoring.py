import math

import pytest
import torch

from effres_core.measure.scoring import EffectiveResolutionRatio, effective_resolution_ratio, patch_scores, reduce_scores

from conftest import make_tiny_net

NAN = float("nan")


def test_median_and_mean_ignore_dropped_patches():
    scores = torch.tensor([[0.1, NAN, 0.3, 0.9, 0.5], [NAN, NAN, 0.2, NAN, NAN]])
    assert torch.allclose(reduce_scores(scores, "median"), torch.tensor([0.3, 0.2]))
    assert torch.allclose(reduce_scores(scores, "mean"), torch.tensor([0.45, 0.2]))


def test_reduce_clips_to_unit_range_unless_told():
    scores = torch.tensor([[-0.5, 1.7, 1.2]])
    assert reduce_scores(scores, "median").item() == 1.0
    assert reduce_scores(scores, "median", clip=False).item() == pytest.approx(1.2)
    assert reduce_scores(torch.tensor([[-0.5, -0.2, 2.0]]), "mean").item() == pytest.approx(1 / 3)


def test_nan_when_nothing_kept():
    net = make_tiny_net()
    images = torch.rand(2, 3, 64, 64)
    mask = torch.ones(2, 64, 64)
    mask[1] = 0  # second image: all background
    y = effective_resolution_ratio(net, images, mask)
    assert torch.isfinite(y[0]) and torch.isnan(y[1])
    assert torch.isnan(reduce_scores(torch.full((1, 4), NAN))).all()


def test_bad_reduce_and_input():
    net = make_tiny_net()
    with pytest.raises(ValueError, match="reduce"):
        reduce_scores(torch.rand(1, 3), "max")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        effective_resolution_ratio(net, torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match="float"):
        effective_resolution_ratio(net, torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(TypeError, match="tensor"):
        effective_resolution_ratio(net, [[0.0]])
    with pytest.raises(ValueError, match="mask"):
        effective_resolution_ratio(net, torch.rand(1, 3, 64, 64), torch.ones(1, 64, 60))
    with pytest.raises(ValueError, match="smaller"):
        effective_resolution_ratio(net, torch.rand(1, 3, 20, 64))


def test_median_is_the_median_of_the_patch_outputs():
    net = make_tiny_net()
    images = torch.rand(1, 3, 64, 96)
    scores, grid = patch_scores(net, images, n_patches=6)
    assert scores.shape == (1, grid.count)
    with torch.no_grad():
        from effres_core.measure.patches import extract_patches

        direct = net(extract_patches(images, grid)[0]).clamp(0, 1)
    y = effective_resolution_ratio(net, images, n_patches=6)
    assert torch.allclose(y, direct.median().view(1))  # torch's median: lower middle for even counts


def test_foreground_filter_drops_patches():
    net = make_tiny_net()
    images = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :32, :] = 1
    scores, grid = patch_scores(net, images, mask, n_patches=4, min_foreground=0.9)
    assert grid.count == 4
    assert torch.isfinite(scores[0, :2]).all() and torch.isnan(scores[0, 2:]).all()


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_chunk_size_does_not_change_scores(chunk_size):
    net = make_tiny_net()
    images = torch.rand(2, 3, 80, 72)
    reference, _ = patch_scores(net, images, n_patches=10, chunk_size=1000)
    scores, _ = patch_scores(net, images, n_patches=10, chunk_size=chunk_size)
    assert torch.allclose(scores, reference, atol=1e-6, equal_nan=True)


def test_module_equals_function():
    net = make_tiny_net()
    images, mask = torch.rand(2, 3, 64, 64), (torch.rand(2, 64, 64) > 0.2).float()
    module = EffectiveResolutionRatio(net, n_patches=9, min_foreground=0.5, reduce="mean")
    expected = effective_resolution_ratio(net, images, mask, n_patches=9, min_foreground=0.5, reduce="mean")
    assert torch.equal(module(images, mask), expected)


@pytest.mark.parametrize("reduce", ["median", "mean"])
def test_gradient_flows_to_the_pixels(reduce):
    net = make_tiny_net()
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    mask = torch.zeros(2, 64, 64)
    mask[:, :, :40] = 1  # right-hand patches dropped
    effective_resolution_ratio(net, images, mask, n_patches=9, reduce=reduce).sum().backward()
    grad = images.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # Dropped patches (columns 40..63 are only in them) get no gradient.
    assert grad[..., 56:].abs().sum() == 0


@pytest.mark.parametrize("reduce", ["median", "mean"])
def test_gradcheck_float64(reduce):
    torch.manual_seed(0)
    net = make_tiny_net(patch_size=16, width=0.125).double()
    images = torch.rand(1, 3, 16, 24, dtype=torch.float64, requires_grad=True)

    def f(x):
        return effective_resolution_ratio(net, x, n_patches=3, reduce=reduce, clip=False)

    assert math.isfinite(f(images).item())
    assert torch.autograd.gradcheck(f, (images,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_keeps_the_input_dtype():
    net = make_tiny_net().double()
    y = effective_resolution_ratio(net, torch.rand(1, 3, 32, 32, dtype=torch.float64))
    assert y.dtype == torch.float64 and y.shape == (1,)
