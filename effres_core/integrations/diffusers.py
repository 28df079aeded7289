"""Face-sharpness guidance for diffusers pipelines, as a ``callback_on_step_end`` callback.

    >>> from effres_core import EffRes
    >>> from effres_core.integrations.diffusers import EffResGuidanceCallback
    >>> guidance = EffResGuidanceCallback(EffRes.from_pretrained(), scale=0.05, start=0.3, end=1.0)
    >>> guidance.attach(pipe)                      # optional: lets step 0 be guided too
    >>> image = pipe(prompt, callback_on_step_end=guidance).images[0]

Works with ``StableDiffusionPipeline`` and ``StableDiffusionXLPipeline`` (any pipeline whose
latents live in a VAE's latent space and whose ``_callback_tensor_inputs`` holds ``"latents"``),
alone or inside ``MultiPipelineCallbacks``. Needs the optional ``diffusers`` extra
(``pip install effres[diffusers]``); ``import effres_core`` never imports this module.

How x0 is found. diffusers calls the callback right after ``scheduler.step`` and hands it only the
tensors listed in the pipeline's ``_callback_tensor_inputs``: the new latents, not the noise
prediction (``noise_pred`` is not in that list for SD or SDXL). Re-running the UNet to get it back
would double the cost of every guided step. Instead the callback wraps the instance's
``scheduler.step`` (signature preserved, results unchanged) and records what the step computed:
its own clean-sample estimate ``pred_original_sample`` when the scheduler returns one (DDIM, DDPM,
Euler, Euler ancestral, Heun, LMS, LCM, ...), else it rebuilds x0 from the recorded model output,
timestep and sample with the scheduler's ``alphas_cumprod`` and ``prediction_type`` (PNDM,
DPM-Solver, UniPC, DEIS). The wrapper is installed by :meth:`EffResGuidanceCallback.attach`, or
at the first callback (then step 0 cannot be guided), and removed by :meth:`detach`.

The step. With ``g`` the unit-RMS gradient of the decoded faces' mean patch score with respect to
x0 (:func:`effres_core.gradient.guidance.sharpness_gradient`), the latents move by ``scale * c * g``, where
``c`` is how the scheduler's next latents depend on x0: ``sqrt(alphas_cumprod[t_next])`` for
schedulers in the DDPM parameterisation and 1 for sigma-parameterised ones (Euler-type). So
``scale`` reads as "how far the clean image moves per guided step, in latent RMS units".
"""

from __future__ import annotations

import functools
import logging
import math
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

try:
    from diffusers.callbacks import PipelineCallback
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("effres_core.integrations.diffusers needs diffusers: pip install 'effres[diffusers]'") from err

from ..gradient.guidance import CAP_MODES, NORMALIZATIONS, GuidanceWindow, sharpness_gradient_with_score
from ..model.net import scoring_net

logger = logging.getLogger("effres")


# ---- recording what scheduler.step computed ---------------------------------------------------------

class _StepRecorder:
    """Wraps one scheduler instance's ``step`` and keeps the inputs and x0 estimate of the last call."""

    _ATTR = "_effres_step_recorder"

    def __init__(self, scheduler):
        self.count = 0
        self.last: dict[str, Any] | None = None
        self.original = scheduler.step

        @functools.wraps(self.original)  # keeps inspect.signature: pipelines probe it for eta/generator
        def step(*args, **kwargs):
            return_dict = kwargs.pop("return_dict", True)
            out = self.original(*args, return_dict=True, **kwargs)
            seen = dict(zip(("model_output", "timestep", "sample"), args))
            seen.update({k: kwargs[k] for k in ("model_output", "timestep", "sample") if k in kwargs})
            pred = getattr(out, "pred_original_sample", None)
            if pred is None:
                pred = getattr(out, "denoised", None)  # LCM names it so
            self.count += 1
            self.last = dict(seen, pred_x0=pred, count=self.count)
            return out if return_dict else out.to_tuple()

        scheduler.step = step
        setattr(scheduler, self._ATTR, self)

    @classmethod
    def on(cls, scheduler) -> "_StepRecorder":
        return getattr(scheduler, cls._ATTR, None) or cls(scheduler)

    @classmethod
    def remove(cls, scheduler) -> None:
        rec = getattr(scheduler, cls._ATTR, None)
        if rec is not None:
            del scheduler.step  # the instance attribute; the class method shows through again
            delattr(scheduler, cls._ATTR)


def _is_sigma_space(scheduler) -> bool:
    """Euler-type schedulers keep latents as ``x0 + sigma * eps`` (initial noise scaled by sigma_max)."""
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0 + 1e-6


def _alpha_bar(scheduler, timestep) -> float | None:
    table = getattr(scheduler, "alphas_cumprod", None)
    if table is None:
        return None
    t = int(timestep.item() if torch.is_tensor(timestep) else timestep)
    return float(table[min(max(t, 0), len(table) - 1)])


def x0_from_record(scheduler, record: dict) -> torch.Tensor | None:
    """The clean-sample estimate of the recorded step; ``None`` if it cannot be derived."""
    if record.get("pred_x0") is not None:
        return record["pred_x0"]
    out, t, x = record.get("model_output"), record.get("timestep"), record.get("sample")
    if out is None or t is None or x is None or _is_sigma_space(scheduler):
        return None
    a = _alpha_bar(scheduler, t)
    if a is None or a <= 0:
        return None
    kind = getattr(scheduler.config, "prediction_type", "epsilon")
    if kind == "epsilon":
        return (x - math.sqrt(1 - a) * out) / math.sqrt(a)
    if kind == "v_prediction":
        return math.sqrt(a) * x - math.sqrt(1 - a) * out
    if kind == "sample":
        return out
    return None


def _x0_coefficient(scheduler, step_index: int) -> float:
    """How the latents after this step depend on x0: ``sqrt(alpha_bar(t_next))`` (DDPM form) or 1."""
    if _is_sigma_space(scheduler):
        return 1.0
    timesteps = getattr(scheduler, "timesteps", None)
    if timesteps is None or step_index + 1 >= len(timesteps):
        return 1.0  # the last step: its output is (close to) the clean sample itself
    a = _alpha_bar(scheduler, timesteps[step_index + 1])
    return 1.0 if a is None else math.sqrt(a)


# ---- decoding ----------------------------------------------------------------------------------------

def vae_decode_fn(vae: nn.Module):
    """Differentiable ``latents -> [B, 3, H, W]`` images in [0, 1] for a diffusers VAE.

    Undoes the pipeline's latent scaling as the SD / SDXL pipelines do before decoding
    (``latents_mean``/``latents_std`` when the config has them, else ``scaling_factor`` and
    ``shift_factor``).
    """
    cfg = vae.config
    scaling = getattr(cfg, "scaling_factor", 1.0) or 1.0
    shift = getattr(cfg, "shift_factor", None) or 0.0
    mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)

    def decode(z: torch.Tensor) -> torch.Tensor:
        z = z.to(vae.dtype)
        if mean is not None and std is not None:
            view = (1, len(mean), 1, 1)
            z = z * torch.tensor(std, device=z.device, dtype=z.dtype).view(view) / scaling \
                + torch.tensor(mean, device=z.device, dtype=z.dtype).view(view)
        else:
            z = z / scaling + shift
        images = vae.decode(z, return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    return decode


@contextmanager
def _checkpointing(vae: nn.Module, enabled: bool):
    """Temporarily turn on the VAE's gradient checkpointing (less memory, one more decoder forward)."""
    if not enabled or getattr(vae, "is_gradient_checkpointing", True) \
            or not getattr(vae, "_supports_gradient_checkpointing", False):
        yield
        return
    vae.enable_gradient_checkpointing()
    try:
        yield
    finally:
        vae.disable_gradient_checkpointing()


# ---- the callback ------------------------------------------------------------------------------------

class EffResGuidanceCallback(PipelineCallback):
    """Move the latents toward sharper-looking faces at the steps inside a window.

    Args:
        model: an ``EffRes`` (needed for ``face_mask=True``), a bare ``EffResNet``, or a model id /
            path for ``EffRes.from_pretrained`` (``None``: the bundled default).
        scale: how far x0 moves per guided step, in latent RMS units (0 disables guidance).
        start, end: the window of sampling progress (fractions of the steps) that is guided.
        every: guide every n-th step inside the window (fewer VAE backward passes).
        max_decode_size: cap on the decoded side in pixels; larger latents are cropped (or shrunk,
            see ``cap_mode``) before decoding. The main memory knob (``None``: decode everything).
        cap_mode: ``"crop"`` (centre window), ``"random_crop"`` or ``"resize"``.
        n_patches: patches per decoded image for the score (fewer: faster).
        face_mask: score and guide only the detected faces (runs detection on each decoded x0;
            needs an ``EffRes``). Default: the whole frame.
        normalize: gradient normalisation, ``"rms"`` (default) or ``"l2"``.
        checkpointing: use the VAE's gradient checkpointing during the backward pass.
        chunk_size: patches per scorer pass.

    After a run, :attr:`history` lists ``{"step", "timestep", "score"}`` for every guided step
    (the mean raw patch score of the decoded x0 before the step).
    """

    tensor_inputs = ["latents"]

    def __init__(self, model=None, scale: float = 0.05, start: float = 0.0, end: float = 1.0, every: int = 1,
                 max_decode_size: int | None = 512, cap_mode: str = "crop", n_patches: int = 25,
                 face_mask: bool = False, normalize: str = "rms", checkpointing: bool = False,
                 chunk_size: int = 16):
        # PipelineCallback.__init__ only validates its own cutoff settings, which we do not have; the
        # settings are registered by hand because diffusers' decorator mis-assigns a positional
        # argument that is left out of the config (the model).
        if scale < 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        if cap_mode not in CAP_MODES:
            raise ValueError(f"cap_mode must be one of {CAP_MODES}, got {cap_mode!r}")
        if normalize not in NORMALIZATIONS or normalize == "none":
            raise ValueError(f"normalize must be 'rms' or 'l2', got {normalize!r}")
        self.window = GuidanceWindow(start, end, every)
        self.register_to_config(scale=float(scale), start=float(start), end=float(end), every=int(every),
                                max_decode_size=max_decode_size, cap_mode=cap_mode, n_patches=int(n_patches),
                                face_mask=bool(face_mask), normalize=normalize, checkpointing=bool(checkpointing),
                                chunk_size=int(chunk_size))
        if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
            from ..measure.scorer import EffRes

            model = EffRes.from_pretrained(model)
        if not isinstance(scoring_net(model), nn.Module):
            raise TypeError(f"model must be an EffRes, an EffResNet or a model id, got {type(model).__name__}")
        if face_mask and not hasattr(model, "face_masks"):
            raise ValueError("face_mask=True needs an EffRes (a bare EffResNet cannot find faces)")
        self.model = model
        self.history: list[dict[str, Any]] = []
        self._used: tuple[int, int] | None = None

    # -- scheduler hook --
    @staticmethod
    def attach(pipeline) -> None:
        """Record every scheduler step of ``pipeline`` from now on (call before sampling to guide step 0)."""
        _StepRecorder.on(pipeline.scheduler)

    @staticmethod
    def detach(pipeline) -> None:
        """Give ``pipeline.scheduler`` its plain ``step`` back."""
        _StepRecorder.remove(pipeline.scheduler)

    def _fresh_record(self, scheduler) -> dict | None:
        rec = _StepRecorder.on(scheduler)
        if rec.last is None or self._used == (id(rec), rec.count):
            return None  # nothing recorded since this callback last looked
        self._used = (id(rec), rec.count)
        return rec.last

    # -- the step --
    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict[str, Any]:
        cfg = self.config
        record = self._fresh_record(pipeline.scheduler)
        num_steps = int(getattr(pipeline, "num_timesteps", 0) or len(pipeline.scheduler.timesteps))
        if cfg.scale == 0 or not self.window.contains(step_index, num_steps):
            return callback_kwargs
        latents = callback_kwargs["latents"]
        x0 = None if record is None else x0_from_record(pipeline.scheduler, record)
        if x0 is None or x0.shape != latents.shape:
            logger.debug("effres guidance: no x0 estimate at step %d; skipped (call attach(pipe) first)", step_index)
            return callback_kwargs
        net = scoring_net(self.model)
        if next(net.parameters()).device != latents.device:
            self.model.to(latents.device)
        vae = pipeline.vae
        decode = vae_decode_fn(vae)
        mask = None
        if cfg.face_mask:
            with torch.no_grad():
                mask = self.model.face_masks(decode(x0)).to(latents.device)
        with _checkpointing(vae, cfg.checkpointing):
            grad, score = sharpness_gradient_with_score(
                x0, decode, net, mask, max_decode_size=cfg.max_decode_size, cap_mode=cfg.cap_mode,
                latent_scale=getattr(pipeline, "vae_scale_factor", 8), n_patches=cfg.n_patches,
                chunk_size=cfg.chunk_size, normalize=cfg.normalize)
        step = cfg.scale * _x0_coefficient(pipeline.scheduler, step_index)
        callback_kwargs["latents"] = latents + (step * grad).to(latents.dtype)
        self.history.append({"step": int(step_index), "timestep": float(timestep), "score": score.cpu().tolist()})
        return callback_kwargs
