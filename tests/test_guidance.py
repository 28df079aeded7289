"""Tests for effres_core.gradient.guidance: the latent sharpness gradient and the guidance window."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from effres_core.gradient.guidance import GuidanceWindow, normalize_gradient, sharpness_gradient, \
    sharpness_gradient_with_score
from effres_core.model.net import EffResNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EffResNet(patch_size=32, width=0.25).eval()


def local_decode(z):
    """A purely local 'VAE': each latent pixel becomes an 8x8 block (no mixing between pixels)."""
    return torch.sigmoid(F.interpolate(z[:, :3], scale_factor=8, mode="nearest"))


@pytest.fixture(scope="module")
def conv_decode():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(4, 3, 3, padding=1)
    return lambda z: torch.sigmoid(conv(F.interpolate(z, scale_factor=8)))


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "grad"])
def test_works_under_any_grad_mode_and_restores_it(net, conv_decode, mode):
    ctx = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode, "grad": torch.enable_grad}[mode]
    with ctx():
        x0 = torch.randn(2, 4, 8, 8)
        before = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        g = sharpness_gradient(x0, conv_decode, net, n_patches=9)
        assert (torch.is_grad_enabled(), torch.is_inference_mode_enabled()) == before
    assert g.shape == x0.shape and torch.isfinite(g).all()
    assert torch.allclose(g.pow(2).mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-4)  # unit RMS per sample
    assert not x0.requires_grad


def test_gradient_is_an_ascent_direction(net, conv_decode):
    x0 = torch.randn(1, 4, 8, 8)
    g, s0 = sharpness_gradient_with_score(x0, conv_decode, net, n_patches=9)
    _, s1 = sharpness_gradient_with_score(x0 + 0.05 * g, conv_decode, net, n_patches=9)
    _, s2 = sharpness_gradient_with_score(x0 - 0.05 * g, conv_decode, net, n_patches=9)
    assert s2 < s0 < s1


def test_x0_is_not_modified(net, conv_decode):
    x0 = torch.randn(1, 4, 8, 8)
    copy = x0.clone()
    sharpness_gradient(x0, conv_decode, net)
    assert torch.equal(x0, copy)


def test_non_finite_gradient_gives_zeros(net):
    x0 = torch.randn(2, 4, 8, 8)
    x0[1, 0, 0, 0] = float("nan")
    g = sharpness_gradient(x0, local_decode, net, n_patches=4)
    assert g[1].abs().sum() == 0 and g[0].abs().sum() > 0
    assert torch.isfinite(g).all()


def test_mask_limits_the_gradient(net):
    x0 = torch.randn(1, 4, 12, 12)
    mask = torch.zeros(1, 96, 96)
    mask[:, 16:80, 16:80] = 1  # latent pixels 2..9
    g = sharpness_gradient(x0, local_decode, net, mask, n_patches=9)
    support = g.abs().sum(dim=(0, 1)) > 0
    assert support.any() and not support[:2].any() and not support[10:].any() and not support[:, :2].any()
    # A mask at another resolution is resized to the decoded size.
    small = F.interpolate(mask[None], size=(48, 48))[0]
    assert torch.allclose(sharpness_gradient(x0, local_decode, net, small, n_patches=9), g, atol=1e-5)


def test_decode_size_cap_crop_and_resize(net):
    x0 = torch.randn(1, 4, 16, 16)
    sizes = []

    def decode(z):
        sizes.append(tuple(z.shape[-2:]))
        return local_decode(z)

    g = sharpness_gradient(x0, decode, net, max_decode_size=64, n_patches=4)
    assert sizes[-1] == (8, 8)
    support = g.abs().sum(dim=(0, 1)) > 0
    assert support[4:12, 4:12].any() and not support[:4].any() and not support[12:].any()
    g = sharpness_gradient(x0, decode, net, max_decode_size=64, cap_mode="resize", n_patches=4)
    assert sizes[-1] == (8, 8)
    assert (g.abs().sum(dim=(0, 1)) > 0).all()  # the shrunk decode still reaches every latent
    gen = torch.Generator().manual_seed(0)
    sharpness_gradient(x0, decode, net, max_decode_size=64, cap_mode="random_crop", generator=gen, n_patches=4)
    assert sizes[-1] == (8, 8)
    with pytest.raises(ValueError):
        sharpness_gradient(x0, decode, net, max_decode_size=64, cap_mode="tile")


def test_normalizations():
    g = torch.randn(3, 4, 5, 5)
    assert torch.allclose(normalize_gradient(g, "l2").flatten(1).norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(normalize_gradient(g, "none"), g)
    assert normalize_gradient(torch.zeros(1, 4, 2, 2)).abs().sum() == 0
    with pytest.raises(ValueError):
        normalize_gradient(g, "max")


def test_bad_inputs(net):
    with pytest.raises(ValueError):
        sharpness_gradient(torch.randn(4, 8, 8), local_decode, net)
    with pytest.raises(ValueError):
        sharpness_gradient(torch.randn(1, 4, 8, 8), lambda z: z[:, :2], net)
    with pytest.raises(ValueError):  # decoded image smaller than one patch
        sharpness_gradient(torch.randn(1, 4, 2, 2), local_decode, net)


def test_accepts_an_effres_like_model(net, conv_decode):
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

    x0 = torch.randn(1, 4, 8, 8)
    assert torch.allclose(sharpness_gradient(x0, conv_decode, Wrapper()), sharpness_gradient(x0, conv_decode, net))


def test_guidance_window():
    w = GuidanceWindow(0.5, 1.0)
    assert [i for i in range(10) if w.contains(i, 10)] == [5, 6, 7, 8, 9]
    assert [i for i in range(10) if GuidanceWindow(0.0, 0.3).contains(i, 10)] == [0, 1, 2]
    assert [i for i in range(10) if GuidanceWindow(every=3).contains(i, 10)] == [0, 3, 6, 9]
    assert not w.contains(10, 10) and not w.contains(0, 0)
    for bad in ((0.6, 0.5), (-0.1, 1.0), (0.0, 1.5)):
        with pytest.raises(ValueError):
            GuidanceWindow(*bad)
    with pytest.raises(ValueError):
        GuidanceWindow(every=0)


def test_core_modules_do_not_import_diffusers():
    code = ("import sys, effres_core, effres_core.gradient.guidance, effres_core.gradient.enhance, effres_core.gradient.losses; "
            "assert 'diffusers' not in sys.modules, 'diffusers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- face windows ------------------------------------------------------------------------------
from effres_core.gradient.guidance import (FaceWindow, centre_window, detect_faces, face_windows,  # noqa: E402
                                           mask_boxes, sharpness_gradient_windows)
from effres_core.measure.faces import FaceBox  # noqa: E402


def test_face_windows_margin_cap_and_merge():
    (win,) = face_windows([FaceBox(64, 64, 128, 128)], (64, 64), margin=0.25)
    assert (win.top, win.left, win.height, win.width) == (6, 6, 12, 12) and win.faces == ((64, 64, 128, 128),)
    (capped,) = face_windows([(0, 0, 400, 400)], (64, 64), margin=0.0, max_latent=16)
    assert (capped.height, capped.width) == (16, 16) and (capped.top, capped.left) == (17, 17)  # around the centre
    (grown,) = face_windows([(500, 500, 508, 508)], (64, 64), margin=0.0, min_latent=8)
    assert (grown.height, grown.width) == (8, 8) and grown.top + grown.height <= 64  # inside the latents
    merged = face_windows([(10, 10, 40, 40), (30, 30, 60, 60)], (64, 64), margin=0.0)
    assert len(merged) == 1 and len(merged[0].faces) == 2
    apart = face_windows([(10, 10, 40, 40), (30, 30, 60, 60)], (64, 64), margin=0.0, max_latent=5)
    assert len(apart) == 2  # the union would not fit the cap
    assert centre_window((64, 32), max_latent=16) == FaceWindow(0, 24, 8, 16, 16)


def test_mask_boxes_and_detect_faces():
    mask = torch.zeros(2, 64, 64)
    mask[0, 5:20, 10:30] = 1
    mask[0, 40:60, 40:50] = 1
    boxes = mask_boxes(mask)
    assert boxes[0] == [FaceBox(10, 5, 30, 20), FaceBox(40, 40, 50, 60)] and boxes[1] == []
    seen = []
    found = detect_faces(torch.rand(2, 3, 16, 24), lambda rgb: seen.append(rgb.shape) or [FaceBox(0, 0, 4, 4)])
    assert seen == [(16, 24, 3)] * 2 and found == [[FaceBox(0, 0, 4, 4)]] * 2


def test_window_gradient_lands_only_inside_the_windows(net, conv_decode):
    x0 = torch.randn(2, 4, 32, 32)
    windows = face_windows([(16, 16, 112, 112)], (32, 32), batch=0, margin=0.25) + \
        face_windows([(150, 120, 250, 230)], (32, 32), batch=1, margin=0.25)
    with torch.inference_mode():  # as a ComfyUI sampler calls it
        grad, score = sharpness_gradient_windows(x0, conv_decode, net, windows)
    inside = torch.zeros_like(grad, dtype=torch.bool)
    for w in windows:
        inside[w.batch, :, w.slices[0], w.slices[1]] = True
    assert torch.isfinite(score).all() and grad[inside].abs().sum() > 0
    assert torch.count_nonzero(grad[~inside]) == 0
    # an ascent direction: a small step raises the faces' score
    _, after = sharpness_gradient_windows(x0 + 0.05 * grad, conv_decode, net, windows)
    assert (after > score).all(), (score, after)


def test_window_gradient_matches_the_whole_image_inside_a_local_decoder(net):
    """With a decoder that does not mix latent pixels, judging a window whole equals cropping to it."""
    x0 = torch.randn(1, 4, 16, 16)
    win = FaceWindow(0, 4, 4, 8, 8)
    grad, _ = sharpness_gradient_windows(x0, local_decode, net, [win], normalize="none")
    ref = sharpness_gradient(x0[..., 4:12, 4:12], local_decode, net, normalize="none")
    assert torch.allclose(grad[..., 4:12, 4:12], ref, atol=1e-6)


def test_window_mask_and_bad_windows(net, conv_decode):
    x0 = torch.randn(1, 4, 16, 16)
    win = FaceWindow(0, 0, 0, 16, 16, ((0, 0, 64, 64),))
    grad, _ = sharpness_gradient_windows(x0, conv_decode, net, [win], mask=torch.zeros(1, 128, 128))
    assert torch.count_nonzero(grad) == 0  # a mask without face pixels: nothing to sharpen
    with pytest.raises(ValueError, match="does not fit"):
        sharpness_gradient_windows(x0, conv_decode, net, [FaceWindow(0, 10, 10, 8, 8)])
    with pytest.raises(ValueError, match="does not fit"):
        sharpness_gradient_windows(x0, conv_decode, net, [FaceWindow(1, 0, 0, 8, 8)])
