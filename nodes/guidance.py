"""EffResGuidance: sharpness guidance during sampling, as a post-CFG hook on a cloned model.

At every sampling step inside the chosen window, the hook takes the predicted clean latent
(``denoised``), decodes it with a private copy of the VAE decoder, asks the core for the gradient
of the effective resolution ratio with respect to that latent, and nudges the prediction along it.

``region="faces"``: on the first guided step the hook decodes the whole prediction once (no
gradient), finds the faces with the effres model's detector (or reads them off the mask), and from
then on decodes and backpropagates only through latent windows around them. Until a face is
found it guides the whole image and looks again on the next guided step.
"""

from __future__ import annotations

import copy
import logging
import time

import torch
from comfy_api.latest import io

from ..effres_core.gradient.guidance import (centre_window, detect_faces, face_windows, mask_boxes,
                                             sharpness_gradient, sharpness_gradient_windows)
from ..effres_core.measure.faces import get_detector
from ._common import autograd_ready
from .loader import EffResModel

logger = logging.getLogger("effres")

REGIONS = ("faces", "whole image")


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
                 sigma_end: float, max_decode_size: int, mask: torch.Tensor | None, region: str = "whole image",
                 face_margin: float = 0.25, detector=None):
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
        self.vae, self.net, self.latent_format = vae, net, latent_format
        self.scale, self.sigma_start, self.sigma_end = scale, sigma_start, sigma_end
        self.max_decode_size, self.mask = max_decode_size, mask
        self.region, self.face_margin, self.detector = region, face_margin, detector
        self.windows = None  # the face windows, once found
        self._decoder = self._dtype = None
        self.step_times: list[float] = []  # seconds per guided step, for diagnostics
        self._warned: set[str] = set()

    def active(self, sigma: float) -> bool:
        return self.sigma_end <= sigma <= self.sigma_start

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Model-space latent ``[B, C, h, w]`` -> image ``[B, 3, H, W]`` in [0, 1], differentiable."""
        z = self.latent_format.process_out(latent).to(self._dtype)
        image = self._decoder.decode(z).float()
        return self.vae.process_output(image)

    def _warn(self, message: str, level: int = logging.WARNING) -> None:
        if message not in self._warned:
            logger.log(level, "effres guidance: %s", message)
            self._warned.add(message)

    def find_windows(self, denoised: torch.Tensor) -> list | None:
        """The face windows for these latents (found once, then kept), or None while no face is known."""
        if self.windows is not None:
            return self.windows
        b, _, h, w = denoised.shape
        if self.mask is not None:  # mask boxes are in the mask's pixels: bring them to the latent grid
            boxes, factor = mask_boxes(self.mask), max(1, round(self.mask.shape[-2] / h))
        else:
            if self.detector is None:
                raise ValueError("region 'faces' needs a face detector or a mask")
            with torch.no_grad():
                images = self.decode(denoised)
            boxes = detect_faces(images, self.detector)
            factor = max(1, round(images.shape[-2] / h))
        if len(boxes) == 1 and b > 1:
            boxes = boxes * b
        if not any(boxes):
            self._warn("no face found on this step's decode; guiding the whole image until one is found",
                       logging.INFO)
            return None
        cap = max(1, self.max_decode_size // factor) if self.max_decode_size else None
        patch = int(getattr(self.net, "patch_size", 0) or 0)
        min_latent = max(1, -(-patch // factor)) if patch else 1
        windows = []
        for i in range(b):
            if boxes[i]:
                windows += face_windows(boxes[i], (h, w), batch=i, latent_scale=factor, margin=self.face_margin,
                                        max_latent=cap, min_latent=min_latent)
            else:  # a sample without a face is guided as a whole
                windows.append(centre_window((h, w), batch=i, max_latent=cap))
        self.windows = windows
        logger.info("effres guidance: %d face window(s): %s", len(windows),
                    ", ".join(f"{win.height * factor}x{win.width * factor} px" for win in windows))
        return windows

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
        windows = self.find_windows(denoised) if self.region == "faces" else None
        if windows is not None and all(win.batch < denoised.shape[0] for win in windows):
            grad, _ = sharpness_gradient_windows(denoised, self.decode, self.net, windows, mask=self.mask)
        else:
            grad = sharpness_gradient(denoised, self.decode, self.net, mask=self.mask,
                                      max_decode_size=self.max_decode_size or None)
        out = denoised + self.scale * grad.to(denoised.dtype)
        self.step_times.append(time.perf_counter() - started)
        logger.debug("effres guidance: sigma %.3f, step %.2fs", sigma, self.step_times[-1])
        return out


def face_detector(effres_model):
    """The effres model's face detector (its ``detector`` setting; a bare network gets the default)."""
    name = getattr(effres_model, "detector_name", "auto")
    device = str(getattr(effres_model, "device", "cpu"))
    return get_detector(name, device)[0]


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
                             tooltip="Decode and judge at most this many pixels per side: per face window with "
                                     "region 'faces', else a centred window of larger images; 0 = no cap."),
                io.Combo.Input("region", options=list(REGIONS), default="faces",
                               tooltip="'faces': find the faces on the first guided step (or take them from the "
                                       "mask) and decode and backpropagate only through windows around them. "
                                       "'whole image': the whole prediction (or its centred window)."),
                io.Float.Input("face_margin", default=0.25, min=0.0, max=2.0, step=0.05,
                               tooltip="With region 'faces': how far each window reaches beyond the face box, "
                                       "in box sizes (room for the decoder's edge; only the face is judged)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: only sharpen where the mask is set (e.g. the face); with region "
                                      "'faces' its regions are the faces (no detection)."),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, vae, effres_model, scale: float = 0.1, start_percent: float = 0.2,
                end_percent: float = 0.9, max_decode_size: int = 512, region: str = "faces",
                face_margin: float = 0.25, mask=None) -> io.NodeOutput:
        if not 0.0 <= start_percent <= end_percent <= 1.0:
            raise ValueError(f"effres guidance: need 0 <= start_percent <= end_percent <= 1, "
                             f"got {start_percent} and {end_percent}")
        if region not in REGIONS:
            raise ValueError(f"effres guidance: region must be one of {REGIONS}, got {region!r}")
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
                             max_decode_size=max_decode_size, mask=mask, region=region, face_margin=face_margin,
                             detector=face_detector(effres_model) if region == "faces" and mask is None else None)
        patched.set_model_sampler_post_cfg_function(hook)
        return io.NodeOutput(patched)
