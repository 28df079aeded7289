"""Tests for effres_core.integrations.diffusers on tiny random diffusers pipelines (offline, CPU)."""

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler  # noqa: E402
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback  # noqa: E402

from effres_core.integrations.diffusers import EffResGuidanceCallback, _StepRecorder, x0_from_record  # noqa: E402
from effres_core.gradient.losses import sharpness_score  # noqa: E402
from effres_core.model.net import EffResNet  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "diffusers_guidance.py"


def _example():
    spec = importlib.util.spec_from_file_location("diffusers_guidance_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    return EffResNet(patch_size=32, width=0.25).eval()


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return _example().build_tiny_pipeline("sd", tmp_path_factory.mktemp("tok"))


class GradModeProbe(PipelineCallback):
    """Records torch.is_grad_enabled() as the next callback in the chain sees it."""

    tensor_inputs = ["latents"]

    def __init__(self):
        self.seen = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.seen.append(torch.is_grad_enabled())
        return callback_kwargs


def _generate(pipe, scorer, callback=None, steps=3):
    generator = torch.Generator("cpu").manual_seed(0)
    out = pipe("a portrait", num_inference_steps=steps, generator=generator, output_type="pt", height=64, width=64,
               callback_on_step_end=callback).images
    with torch.no_grad():
        return out, float(sharpness_score(scorer, out.float())[0])


def test_guidance_raises_the_final_score(sd, scorer):
    plain, score0 = _generate(sd, scorer)
    guidance = EffResGuidanceCallback(scorer, scale=0.5, max_decode_size=None, n_patches=9)
    guidance.attach(sd)
    try:
        off, score_off = _generate(sd, scorer, EffResGuidanceCallback(scorer, scale=0.0))
        guided, score1 = _generate(sd, scorer, guidance)
    finally:
        guidance.detach(sd)
    assert torch.equal(off, plain)  # scale 0 (and the step recorder) change nothing
    assert score1 > score0
    assert [h["step"] for h in guidance.history] == [0, 1, 2]


def test_grad_mode_restored_inside_multi_callbacks(sd, scorer):
    probe = GradModeProbe()
    guidance = EffResGuidanceCallback(scorer, scale=0.5, n_patches=9)
    _generate(sd, scorer, MultiPipelineCallbacks([guidance, probe]))
    guidance.detach(sd)
    assert probe.seen == [False, False, False]  # diffusers samples under no_grad; we leave it so
    assert len(guidance.history) == 2  # attached at the first call: steps 1 and 2 are guided
    assert torch.is_grad_enabled()


def test_window_limits_guided_steps(sd, scorer):
    guidance = EffResGuidanceCallback(scorer, scale=0.5, start=0.5, end=1.0, n_patches=9)
    guidance.attach(sd)
    _generate(sd, scorer, guidance, steps=4)
    guidance.detach(sd)
    assert [h["step"] for h in guidance.history] == [2, 3]


def test_config_and_validation(scorer):
    cb = EffResGuidanceCallback(scorer, scale=0.1, start=0.2, max_decode_size=256)
    assert cb.config.scale == 0.1 and cb.config.start == 0.2 and cb.config.max_decode_size == 256
    assert "model" not in cb.config
    assert cb.tensor_inputs == ["latents"]
    with pytest.raises(ValueError):
        EffResGuidanceCallback(scorer, scale=-1)
    with pytest.raises(ValueError):
        EffResGuidanceCallback(scorer, start=0.8, end=0.2)
    with pytest.raises(ValueError):
        EffResGuidanceCallback(scorer, face_mask=True)  # a bare net cannot find faces
    with pytest.raises(TypeError):
        EffResGuidanceCallback(3.0)


def test_recorder_keeps_signature_and_results():
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    sched.set_timesteps(5)
    plain = DDIMScheduler.from_config(sched.config)
    plain.set_timesteps(5)
    rec = _StepRecorder.on(sched)
    assert "eta" in inspect.signature(sched.step).parameters  # pipelines probe it
    torch.manual_seed(0)
    sample, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    t = sched.timesteps[1]
    ours = sched.step(eps, t, sample, return_dict=False)
    ref = plain.step(eps, t, sample, return_dict=False)
    assert len(ours) == len(ref) and all(torch.equal(a, b) for a, b in zip(ours, ref))
    assert torch.equal(rec.last["pred_x0"], ref[1])
    # The formula used for schedulers that return no x0 agrees with DDIM's own estimate.
    rebuilt = x0_from_record(sched, dict(rec.last, pred_x0=None))
    assert torch.allclose(rebuilt, ref[1], atol=1e-5)
    _StepRecorder.remove(sched)
    assert "step" not in vars(sched)


@pytest.mark.parametrize("cls", [PNDMScheduler, DPMSolverMultistepScheduler])
def test_schedulers_without_x0_output(sd, scorer, cls):
    original = sd.scheduler
    extra = {"skip_prk_steps": True} if cls is PNDMScheduler else {}  # as SD's own PNDM config
    sd.scheduler = cls.from_config(original.config, **extra)
    try:
        guidance = EffResGuidanceCallback(scorer, scale=0.5, n_patches=9)
        guidance.attach(sd)
        _, score1 = _generate(sd, scorer, guidance)
        guidance.detach(sd)
        _, score0 = _generate(sd, scorer)
    finally:
        sd.scheduler = original
    assert len(guidance.history) == sd.num_timesteps
    assert score1 > score0


def test_sdxl(tmp_path, scorer):
    pipe = _example().build_tiny_pipeline("sdxl", tmp_path)
    _, score0 = _generate(pipe, scorer)
    guidance = EffResGuidanceCallback(scorer, scale=0.5, n_patches=9)
    guidance.attach(pipe)
    _, score1 = _generate(pipe, scorer, guidance)
    assert len(guidance.history) == 3 and score1 > score0
