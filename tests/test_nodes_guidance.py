"""EffResGuidance without ComfyUI: its post-CFG hook on a stand-in model patcher and VAE whose
weights are inference tensors, called under ``torch.inference_mode()`` as ComfyUI's sampler does."""

import copy
import logging

import pytest
import torch
from torch import nn

from nodes_support import inference_tensors_in, pack, pack_module as sub


class TinyAutoencoder(nn.Module):
    """Shaped like ComfyUI's ``first_stage_model``: an encoder we must not copy and ``decode``."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 8, stride=8)
        self.decoder = nn.Sequential(nn.Conv2d(4, 24, 3, padding=1), nn.Tanh(), nn.Conv2d(24, 3 * 64, 1),
                                     nn.PixelShuffle(8))

    def decode(self, z):
        return self.decoder(z)


class FakeVAE:
    def __init__(self):
        torch.manual_seed(0)
        with torch.inference_mode():  # ComfyUI loads VAE weights like this: inference tensors
            self.first_stage_model = TinyAutoencoder()
        self.vae_dtype = torch.float32

    @staticmethod
    def process_output(image):
        return torch.clamp((image + 1.0) / 2.0, min=0.0, max=1.0)


class FakeSampling:
    def percent_to_sigma(self, percent):  # ComfyUI's convention: 0 -> huge, 1 -> 0
        return 1e9 if percent <= 0 else 0.0 if percent >= 1 else 14.6 * (1 - percent) ** 2


class FakeLatentFormat:
    def process_out(self, latent):
        return latent / 0.18215


class FakePatcher:
    def __init__(self, options=None):
        self.model_options = options or {}

    def clone(self):
        return FakePatcher(copy.copy(self.model_options))

    def get_model_object(self, name):
        return {"model_sampling": FakeSampling(), "latent_format": FakeLatentFormat()}[name]

    def set_model_sampler_post_cfg_function(self, fn, disable_cfg1_optimization=False):
        self.model_options = dict(self.model_options)
        self.model_options["sampler_post_cfg_function"] = self.model_options.get("sampler_post_cfg_function", []) + [fn]


@pytest.fixture(scope="module")
def effres_pack():
    with pack("effres_pack_guidance", fake_comfy=True) as module:
        yield module


@pytest.fixture(scope="module")
def scorer(effres_pack):
    torch.manual_seed(1)
    net = sub(effres_pack, "effres_core.model.net").EffResNet(patch_size=32, width=0.25).eval()
    return sub(effres_pack, "effres_core.measure.scorer").EffRes(net, detector="whole", masker="none", device="cpu")


def patch(effres_pack, scorer, vae, **settings):
    settings = {"scale": 0.2, "start_percent": 0.0, "end_percent": 1.0, "max_decode_size": 512, **settings}
    cls = sub(effres_pack, "nodes.guidance").EffResGuidance
    with torch.inference_mode():
        return cls.execute(model=FakePatcher(), vae=vae, effres_model=scorer, **settings)[0]


def step(model, denoised, sigma=1.0):
    hook = model.model_options["sampler_post_cfg_function"][0]
    with torch.inference_mode():  # ComfyUI samples under inference mode
        return hook({"denoised": denoised, "sigma": torch.tensor([sigma]), "input": denoised,
                     "cond_denoised": denoised, "uncond_denoised": denoised, "cond_scale": 5.0})


def latents(seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        return torch.randn(1, 4, size, size, generator=g)


def test_scale_zero_is_the_unpatched_model(effres_pack, scorer):
    original = FakePatcher({"keep": 1})
    cls = sub(effres_pack, "nodes.guidance").EffResGuidance
    with torch.inference_mode():
        out = cls.execute(model=original, vae=FakeVAE(), effres_model=scorer, scale=0.0)[0]
    assert out is original and "sampler_post_cfg_function" not in out.model_options


def test_clone_keeps_the_input_model_untouched(effres_pack, scorer):
    vae = FakeVAE()
    before = {k: v.clone() for k, v in vae.first_stage_model.state_dict().items()}
    model = patch(effres_pack, scorer, vae)
    assert len(model.model_options["sampler_post_cfg_function"]) == 1
    x0 = latents()
    out = step(model, x0)
    assert out.shape == x0.shape and torch.isfinite(out).all() and not torch.equal(out, x0)
    hook = model.model_options["sampler_post_cfg_function"][0]
    assert hook._decoder.encoder is None and inference_tensors_in(hook._decoder) == 0  # private, no encoder
    assert all(torch.equal(v, before[k]) for k, v in vae.first_stage_model.state_dict().items())
    assert inference_tensors_in(vae.first_stage_model) > 0  # the shared VAE was not replaced


def test_step_raises_the_score(effres_pack, scorer):
    vae = FakeVAE()
    model = patch(effres_pack, scorer, vae, scale=0.05)
    hook = model.model_options["sampler_post_cfg_function"][0]
    x0 = latents(3)
    out = step(model, x0)
    sharpness = sub(effres_pack, "effres_core.gradient.losses").sharpness_score
    with torch.no_grad():
        s0 = sharpness(scorer.net, hook.decode(x0.clone()), n_patches=25)
        s1 = sharpness(scorer.net, hook.decode(out.clone()), n_patches=25)
    assert float(s1) > float(s0)
    assert len(hook.step_times) == 1 and hook.step_times[0] > 0


def test_window_and_bad_latents(effres_pack, scorer, caplog):
    model = patch(effres_pack, scorer, FakeVAE(), start_percent=0.5, end_percent=0.9)
    x0 = latents()
    assert step(model, x0, sigma=10.0) is x0  # before the window (sigma too high)
    assert step(model, x0, sigma=0.01) is x0  # after it
    assert not torch.equal(step(model, x0, sigma=1.0), x0)
    nan = latents().clone()
    nan[0, 0, 0, 0] = float("nan")
    with caplog.at_level(logging.WARNING, logger="effres"):
        assert step(model, nan, sigma=1.0) is nan
    assert "NaN" in caplog.text


def test_mask_limits_the_nudge(effres_pack, scorer):
    with torch.inference_mode():  # a ComfyUI MASK is an inference tensor too
        nothing = torch.zeros(1, 64, 64)
    model = patch(effres_pack, scorer, FakeVAE(), mask=nothing)
    x0 = latents()
    assert torch.equal(step(model, x0), x0)  # no face pixel: zero gradient


def test_bad_window(effres_pack, scorer):
    with pytest.raises(ValueError, match="start_percent"):
        patch(effres_pack, scorer, FakeVAE(), start_percent=0.8, end_percent=0.2)


def test_faces_region_from_a_mask_changes_only_the_face_window(effres_pack, scorer):
    mask = torch.zeros(1, 128, 128)
    mask[:, 8:48, 72:120] = 1  # an off-centre "face", top right
    with torch.inference_mode():
        mask = mask.clone()
    model = patch(effres_pack, scorer, FakeVAE(), mask=mask, region="faces", face_margin=0.25)
    x0 = latents(size=16)
    change = (step(model, x0) - x0).abs()[0].amax(dim=0)
    hook = model.model_options["sampler_post_cfg_function"][0]
    (win,) = hook.windows
    assert (win.top, win.left) == (0, 7) and win.top + win.height <= 8 and win.left + win.width == 16
    inside = torch.zeros_like(change, dtype=torch.bool)
    inside[win.slices] = True
    assert change[inside].sum() > 0 and torch.count_nonzero(change[~inside]) == 0
    whole = patch(effres_pack, scorer, FakeVAE(), mask=mask, region="whole image")
    assert not whole.model_options["sampler_post_cfg_function"][0].windows


def test_faces_region_looks_again_until_a_face_is_found(effres_pack, scorer, caplog):
    guidance = sub(effres_pack, "nodes.guidance")
    calls = []

    def detector(rgb):
        calls.append(rgb.shape)
        return [] if len(calls) == 1 else [sub(effres_pack, "effres_core.measure.faces").FaceBox(0, 0, 48, 48)]

    vae = FakeVAE()
    hook = guidance.SharpnessHook(vae, scorer.inference_net, FakeLatentFormat(), 0.2, sigma_start=10.0, sigma_end=0.0,
                                  max_decode_size=512, mask=None, region="faces", detector=detector)
    x0 = latents(size=16)
    args = {"denoised": x0, "sigma": torch.tensor([1.0])}
    with caplog.at_level(logging.INFO, logger="effres"), torch.inference_mode():
        first = hook(dict(args))
        second = hook(dict(args))
        hook(dict(args))
    assert calls == [(128, 128, 3), (128, 128, 3)]  # found on the second step, then kept
    assert "no face found" in caplog.text
    assert torch.count_nonzero((first - x0)[..., 10:, 10:]) > 0  # whole image while no face was known
    assert torch.count_nonzero((second - x0)[..., 10:, 10:]) == 0  # then only around the face
    with pytest.raises(ValueError, match="region"):
        patch(effres_pack, scorer, FakeVAE(), region="everywhere")
