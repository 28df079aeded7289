"""Tests for effres_core.gradient.losses: MAPE, the memory-bounded sharpness objective and SharpnessLoss."""

import pytest
import torch

from effres_core.gradient.losses import SharpnessLoss, mape_loss, sharpness_score, soft_clip
from effres_core.model.net import EffResNet
from effres_core.measure.scoring import patch_scores


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EffResNet(patch_size=32, width=0.25).eval()


def test_mape_values_and_zero_label_guard():
    assert mape_loss(torch.tensor([0.5, 1.0]), torch.tensor([0.25, 1.0])).item() == pytest.approx(0.5)
    assert mape_loss(torch.tensor([0.3]), torch.tensor([0.3])).item() == 0.0
    assert torch.isfinite(mape_loss(torch.tensor([0.2]), torch.tensor([0.0])))


def test_mape_gradient_sign():
    pred = torch.tensor([0.8], requires_grad=True)
    mape_loss(pred, torch.tensor([0.5])).backward()
    assert pred.grad.item() == pytest.approx(1 / 0.5)


def test_soft_clip_matches_clamp_away_from_bounds():
    x = torch.tensor([-2.0, 0.5, 3.0])
    assert torch.allclose(soft_clip(x), x.clamp(0, 1), atol=1e-4)
    y = torch.linspace(-1, 2, 50, requires_grad=True)
    soft_clip(y).sum().backward()
    assert (y.grad > 0).all()  # never flat: a soft clip keeps a gradient everywhere


def test_sharpness_score_is_mean_of_kept_patch_scores(net):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 80, 70, requires_grad=True)
    mask = torch.zeros(2, 80, 70)
    mask[:, 10:70, 5:60] = 1
    ours = sharpness_score(net, x, mask, n_patches=20, chunk_size=3)
    ours.sum().backward()
    ours_grad, x.grad = x.grad.clone(), None
    scores, _ = patch_scores(net, x, mask, n_patches=20, min_foreground=0.9)
    ref = torch.nanmean(scores, dim=1)
    ref.sum().backward()
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(ours_grad, x.grad, atol=1e-7)


def test_chunk_size_does_not_change_result(net):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    grads = []
    for chunk in (1, 4, 100):
        x.grad = None
        sharpness_score(net, x, n_patches=9, chunk_size=chunk).sum().backward()
        grads.append(x.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-7) and torch.allclose(grads[0], grads[2], atol=1e-7)


def test_sharpness_score_gradcheck(net):
    net64 = EffResNet(patch_size=16, width=0.25).double().eval()
    x = torch.rand(1, 3, 24, 24, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sharpness_score(net64, t, n_patches=4, chunk_size=2), (x,),
                                    fast_mode=True)


def test_no_usable_patch_gives_nan_and_zero_gradient(net):
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    mask = torch.ones(2, 64, 64)
    mask[1] = 0
    s = sharpness_score(net, x, mask, n_patches=9)
    assert torch.isfinite(s[0]) and torch.isnan(s[1])
    torch.nan_to_num(s).sum().backward()
    assert x.grad[1].abs().sum() == 0 and x.grad[0].abs().sum() > 0


def test_non_contiguous_and_no_grad_inputs(net):
    base = torch.rand(1, 64, 64, 3)
    x = base.permute(0, 3, 1, 2)  # non-contiguous view
    assert not x.is_contiguous()
    assert torch.allclose(sharpness_score(net, x, n_patches=9), sharpness_score(net, x.contiguous(), n_patches=9))
    with torch.no_grad():
        assert sharpness_score(net, x, n_patches=9).grad_fn is None


@pytest.mark.parametrize("bad, err", [
    (torch.rand(3, 64, 64), ValueError),
    (torch.rand(1, 1, 64, 64), ValueError),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError),
    (torch.rand(1, 3, 16, 16), ValueError),  # smaller than a patch
])
def test_bad_inputs(net, bad, err):
    with pytest.raises(err):
        sharpness_score(net, bad)


def test_bad_settings(net):
    with pytest.raises(ValueError):
        sharpness_score(net, torch.rand(1, 3, 64, 64), clip="hard")
    with pytest.raises(ValueError):
        SharpnessLoss(net, clip="hard")
    with pytest.raises(TypeError):
        SharpnessLoss("not a model")


def test_loss_trains_the_generator_not_the_scorer():
    torch.manual_seed(0)
    scorer = EffResNet(patch_size=32, width=0.25).train()
    loss_fn = SharpnessLoss(scorer, n_patches=9)
    assert not scorer.training and all(not p.requires_grad for p in scorer.parameters())
    generator = torch.nn.Conv2d(3, 3, 3, padding=1)
    loss = loss_fn(torch.sigmoid(generator(torch.rand(2, 3, 64, 64))))
    loss.backward()
    assert generator.weight.grad is not None and generator.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in scorer.parameters())
    loss_fn.train()  # a surrounding training loop must not wake the scorer's BatchNorm
    assert not scorer.training


def test_loss_steps_lower_the_loss(net):
    """A few plain gradient steps on a 'generator' (here: the pixels) reduce the loss."""
    loss_fn = SharpnessLoss(net, n_patches=9, clip="none")
    logits = torch.zeros(1, 3, 64, 64).uniform_(-1, 1).requires_grad_(True)
    first = loss_fn(torch.sigmoid(logits)).item()
    opt = torch.optim.SGD([logits], lr=50.0)
    for _ in range(3):
        opt.zero_grad()
        loss_fn(torch.sigmoid(logits)).backward()
        opt.step()
    assert loss_fn(torch.sigmoid(logits)).item() < first


def test_module_equals_function_and_skips_unusable_images(net):
    x = torch.rand(2, 3, 64, 64)
    mask = torch.ones(2, 64, 64)
    mask[1] = 0
    loss = SharpnessLoss(net, n_patches=9, clip="soft")(x, mask)
    expected = 1 - sharpness_score(net, x[:1], mask[:1], n_patches=9, clip="soft").mean()
    assert torch.allclose(loss, expected)
    x.requires_grad_(True)
    empty = SharpnessLoss(net, n_patches=9)(x, torch.zeros(2, 64, 64))
    empty.backward()
    assert empty.item() == 0 and x.grad.abs().sum() == 0


def test_sharpness_of_patches_scale_multiplies_each_patch_before_the_clip(net):
    from effres_core.gradient.losses import sharpness_of_patches

    x = torch.rand(2, 3, 64, 64)
    boxes = [(0, 0, 32, 32), (16, 8, 48, 40), (32, 32, 64, 64)]
    with torch.no_grad():
        raw = torch.stack([net(x[:, :, y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes], dim=1)
        assert torch.allclose(sharpness_of_patches(net, x, boxes, scale=3.0), (3 * raw).mean(1), atol=1e-5)
        assert torch.allclose(sharpness_of_patches(net, x, boxes, scale=3.0, clip="soft"),
                              soft_clip(3 * raw).mean(1), atol=1e-5)
    x64 = torch.rand(1, 3, 24, 24, dtype=torch.float64, requires_grad=True)
    net64 = EffResNet(patch_size=16, width=0.25).double().eval()
    assert torch.autograd.gradcheck(lambda t: sharpness_of_patches(net64, t, [(0, 0, 16, 16), (8, 4, 24, 20)],
                                                                   scale=2.5), (x64,), fast_mode=True)
    with pytest.raises(ValueError, match="scale"):
        sharpness_of_patches(net, x, boxes, scale=0.0)
