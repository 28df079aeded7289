"""EffResGuidance: sharpness guidance during sampling, as a post-CFG hook on a cloned model.

At every sampling step inside the chosen window, the hook takes the predicted clean latent
(``denoised``), decodes it with a private copy of the VAE decoder, asks the core for the gradient
of the effective resolution ratio with respect to that latent, and nudges the prediction along it.
"""

from __future__ import annotations

import copy
import logging
import time

import torch
from comfy_api.latest import io

from ..effres_core.gradient.guidance import sharpness_gradient
from ._common import autograd_ready
from .loader import EffResModel

logger = logging.getLogger("effres")


def private_decoder(vae, device: torch.device) -> tuple[torch.nn.Module, torch.dtype]:
    """A copy of ``vae.first_stage_model`` (without its encoder) that autograd can use.

    ComfyUI loads VAE weights under inference mode, so they are inference tensors that can never
    be saved for backward; a copy made with inference mode off holds ordinary tensors. The copy is
    ours alone, so the VAE that other nodes use is never touched.
    """
    source = vae.first_stage_model
    skip = {id(source.encoder): None} if isinstance(getattr(source, "encoder", None), torch.nn.Module) else {}
    dtype = torch.float32 if device.type == "cpu" else getattr(vae, "vae_dtype", torch.float32)
    with torch.inference_mode(False):
        decoder = copy.deepcopy(source, memo=skip).to(device=device, dtype=dtype).eval()
        decoder.requires_grad_(False)
    return decoder, dtype


class SharpnessHook:
    """The post-CFG function. Holds its decoder and scorer copies, made on the first guided step."""

    def __init__(self, vae, net: torch.nn.Module, latent_format, scale: float, sigma_start: float,
                 sigma_end: float, max_decode_size: int, mask: torch.Tensor | None):
        self.vae, self.net, self.latent_format = vae, net, latent_format
        self.scale, self.sigma_start, self.sigma_end = scale, sigma_start, sigma_end
        self.max_decode_size, self.mask = max_decode_size, mask
        self._decoder = self._dtype = None
        self.step_times: list[float] = []  # seconds per guided step, for diagnostics
        self._warned = False

    def active(self, sigma: float) -> bool:
        return self.sigma_end <= sigma <= self.sigma_start

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Model-space latent ``[B, C, h, w]`` -> image ``[B, 3, H, W]`` in [0, 1], differentiable."""
        z = self.latent_format.process_out(latent).to(self._dtype)
        image = self._decoder.decode(z).float()
        return self.vae.process_output(image)

    def _warn(self, message: str) -> None:
        if not self._warned:
            logger.warning("effres guidance: %s", message)
            self._warned = True

    def __call__(self, args: dict) -> torch.Tensor:
        denoised = args["denoised"]
        sigma = float(args["sigma"].max())
        if not self.active(sigma):
            return denoised
        if denoised.ndim != 4:
            self._warn(f"only image latents [B, C, H, W] are supported, got shape {tuple(denoised.shape)}; skipped")
            return denoised
        if not bool(torch.isfinite(denoised).all()):
            self._warn("the predicted latent holds NaN/inf values (a broken model or sampler?); "
                       "guidance is skipped for such steps")
            return denoised
        started = time.perf_counter()
        device = denoised.device
        if self._decoder is None:  # first guided step: private copies, made with inference mode off
            self._decoder, self._dtype = private_decoder(self.vae, device)
            self.net = autograd_ready(self.net)
            if next(self.net.parameters()).device != device:
                with torch.inference_mode(False):
                    self.net = copy.deepcopy(self.net).to(device)
        # The core switches inference mode and no_grad off around its own backward pass.
        grad = sharpness_gradient(denoised, self.decode, self.net, mask=self.mask,
                                  max_decode_size=self.max_decode_size or None)
        out = denoised + self.scale * grad.to(denoised.dtype)
        self.step_times.append(time.perf_counter() - started)
        logger.debug("effres guidance: sigma %.3f, step %.2fs", sigma, self.step_times[-1])
        return out


class EffResGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResGuidance",
            display_name="effres sharpness guidance",
            category="effres",
            description="Patches a model so that, during sampling, each predicted image is nudged towards a "
                        "higher effective resolution (sharper detail). Scale 0 returns the model unchanged.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model to guide (it is cloned, never changed)."),
                io.Vae.Input("vae", tooltip="The VAE that decodes this model's latents."),
                EffResModel.Input("effres_model", tooltip="From 'Load effres model': the sharpness judge."),
                io.Float.Input("scale", default=0.1, min=0.0, max=5.0, step=0.01,
                               tooltip="How far each guided step moves the predicted latent, in units of its "
                                       "typical value (RMS); 0.05-0.3 is a useful range. 0 = off (the unpatched model)."),
                io.Float.Input("start_percent", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Start guiding at this fraction of the sampling schedule "
                                       "(0 = first step). Early steps decide the layout, not the detail."),
                io.Float.Input("end_percent", default=0.9, min=0.0, max=1.0, step=0.01,
                               tooltip="Stop guiding after this fraction of the schedule (1 = last step)."),
                io.Int.Input("max_decode_size", default=512, min=0, max=4096, step=64,
                             tooltip="Decode and judge at most this many pixels per side (a centred window "
                                     "of larger images) to bound time and memory; 0 = the whole image."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: only sharpen where the mask is set (e.g. the face)."),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, vae, effres_model, scale: float = 0.1, start_percent: float = 0.2,
                end_percent: float = 0.9, max_decode_size: int = 512, mask=None) -> io.NodeOutput:
        if not 0.0 <= start_percent <= end_percent <= 1.0:
            raise ValueError(f"effres guidance: need 0 <= start_percent <= end_percent <= 1, "
                             f"got {start_percent} and {end_percent}")
        if scale == 0:
            return io.NodeOutput(model)  # bit-identical: the very same model, no hook
        if mask is not None:
            with torch.inference_mode(False):  # ComfyUI's MASK is an inference tensor: autograd would refuse it
                mask = mask.detach().clone().float()
        patched = model.clone()
        sampling = patched.get_model_object("model_sampling")
        hook = SharpnessHook(vae, effres_model.inference_net, patched.get_model_object("latent_format"), scale,
                             sigma_start=float(sampling.percent_to_sigma(start_percent)),
                             sigma_end=float(sampling.percent_to_sigma(end_percent)),
                             max_decode_size=max_decode_size, mask=mask)
        patched.set_model_sampler_post_cfg_function(hook)
        return io.NodeOutput(patched)
