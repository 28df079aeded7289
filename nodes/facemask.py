"""EffResFaceMask: the face mask the scorer uses, as a ComfyUI MASK (for inpainting, detailers)."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ._common import check_image, image_to_rgb
from .loader import EffResModel


class EffResFaceMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResFaceMask",
            display_name="effres face mask",
            category="effres",
            description="Detects the faces and returns the mask of the face pixels the scorer looks at "
                        "(face, hair, eyes, brows, nose, lips, ears, glasses; not neck, clothes or background).",
            inputs=[
                EffResModel.Input("effres_model", tooltip="From 'Load effres model' (its detector and masker are used)."),
                io.Image.Input("images", tooltip="Images to find faces in."),
            ],
            outputs=[io.Mask.Output(display_name="face_mask", tooltip="[B, H, W] in [0, 1]; all zero without a face.")],
        )

    @classmethod
    def execute(cls, effres_model, images) -> io.NodeOutput:
        images = check_image(images)
        b, h, w, _ = images.shape
        if b == 0:
            return io.NodeOutput(images.new_zeros(0, h, w), ui=ui.PreviewText("empty batch: no mask"))
        rgb, _ = image_to_rgb(images)
        if not bool(torch.isfinite(rgb).all()):
            raise ValueError("effres face mask: the images hold NaN or infinite values")
        # ComfyUI's channels-last layout, RGB only, so the channel axis is never ambiguous
        masks = effres_model.face_masks(rgb.movedim(1, -1).float().cpu()).to(images.device)
        found = [bool(m.max() > 0) for m in masks]
        text = "\n".join(f"#{i}: {'face' if f else 'no face found'}" for i, f in enumerate(found))
        return io.NodeOutput(masks, ui=ui.PreviewText(text))

