"""EffResEnhance: sharpen (or soften) faces by L2 PGD on the scorer's own prediction."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..effres_core.gradient.enhance import DIRECTIONS, enhance
from ._common import NOT_SCORED, autograd_ready, check_image, check_mask, grad_input, image_to_rgb, rgb_to_image
from .loader import EffResModel


def _scores(values: torch.Tensor) -> list[float]:
    return [float(v) if bool(torch.isfinite(v)) else NOT_SCORED for v in values]


class EffResEnhance(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResEnhance",
            display_name="effres enhance",
            category="effres",
            description="Projected gradient ascent on the predicted effective resolution: 'sharpen' adds "
                        "plausible skin and hair detail, 'soften' blurs realistically (paper, supplement 6).",
            inputs=[
                EffResModel.Input("effres_model", tooltip="From 'Load effres model'."),
                io.Image.Input("images", tooltip="Images to enhance."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Where pixels may change (0 = never). Not connected: the faces the "
                                      "scorer finds (background untouched)."),
                io.Combo.Input("direction", options=list(DIRECTIONS), default="sharpen",
                               tooltip="'sharpen' raises the predicted ratio, 'soften' lowers it."),
                io.Int.Input("steps", default=10, min=0, max=200,
                             tooltip="Gradient steps (the paper's 10). 0 returns the input."),
                io.Float.Input("step_size", default=100.0, min=0.0, max=1000.0, step=1.0,
                               tooltip="L2 length of each step in 0-255 pixel units per patch area "
                                       "(the paper's strong setting: 100)."),
                io.Float.Input("max_change", default=16.0, min=0.0, max=255.0, step=0.5,
                               tooltip="Largest total change of any pixel, in 0-255 units; 0 = no limit."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The enhanced images (same layout as the input)."),
                io.Float.Output(display_name="before", is_output_list=True,
                                tooltip="Per-image ratio before, as 'effres score' measures it; -1 where no face "
                                        "could be scored."),
                io.Float.Output(display_name="after", is_output_list=True,
                                tooltip="Per-image ratio of the output, as 'effres score' measures it; -1 where no "
                                        "face could be scored."),
            ],
        )

    @classmethod
    def execute(cls, effres_model, images, mask=None, direction: str = "sharpen", steps: int = 10,
                step_size: float = 100.0, max_change: float = 16.0) -> io.NodeOutput:
        images = check_image(images)
        b, h, w, c = images.shape
        if b == 0:
            return io.NodeOutput(images, [], [], ui=ui.PreviewText("empty batch: nothing to enhance"))
        rgb, alpha = image_to_rgb(images)
        bad = [i for i in range(b) if not bool(torch.isfinite(rgb[i]).all())]
        if bad:
            raise ValueError(f"effres enhance: images {bad} hold NaN or infinite values")
        mask = check_mask(mask, b, h, w)
        # ComfyUI runs nodes under inference mode, where autograd is off; the PGD needs it, on
        # ordinary (non-inference) copies of the images and weights.
        with torch.inference_mode(False):
            result = enhance(autograd_ready(effres_model), grad_input(rgb).float(), direction=direction,
                             steps=steps, step_size=step_size, max_change=max_change or None,
                             mask=None if mask is None else grad_input(mask))
            out = rgb_to_image(result.images.to(images), alpha, c)
        before, after = _scores(result.before), _scores(result.after)
        moved = [bool(torch.isfinite(v)) for v in result.raw_before]  # False: no usable face patch
        text = "\n".join(f"#{i}: " + (f"{x:.3f} -> {y:.3f}" if ok and x >= 0 and y >= 0 else "no usable face, unchanged")
                         for i, (x, y, ok) in enumerate(zip(before, after, moved)))
        return io.NodeOutput(out, before, after, ui=ui.PreviewText(text))
