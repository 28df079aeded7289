"""EffResScore: the effective resolution of every face image in a batch, shown on the node."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ._common import (check_image, describe, effective_height, heatmap_image, mask_batch, ratio_of,
                      score_images, summary_json)
from .loader import EffResModel


class EffResScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResScore",
            display_name="effres score",
            category="effres",
            description="Effective resolution ratio y of each image (1 = fully sharp, 0.25 = looks like a 4x "
                        "upscale), measured on the faces. Images without a usable face score -1.",
            is_output_node=True,  # runs and shows its scores even when nothing is wired to it
            inputs=[
                EffResModel.Input("effres_model", tooltip="From 'Load effres model'."),
                io.Image.Input("images", tooltip="Images to score (a batch scores each image on its own)."),
            ],
            outputs=[
                io.Float.Output(display_name="ratio", is_output_list=True,
                                tooltip="Per-image ratio in [0, 1]; -1 where no face could be scored."),
                io.Int.Output(display_name="effective_resolution", is_output_list=True,
                              tooltip="Per-image effective height in pixels (ratio x height); -1 if not scored."),
                io.String.Output(display_name="summary", tooltip="JSON: one entry per image with faces and reasons."),
                io.Image.Output(display_name="heatmap",
                                tooltip="Patch scores over the image (viridis: purple = blurry, yellow = sharp)."),
                io.Mask.Output(display_name="face_mask", tooltip="The face mask the scorer used."),
            ],
        )

    @classmethod
    def execute(cls, effres_model, images) -> io.NodeOutput:
        images = check_image(images)
        results = score_images(effres_model, images)
        _, h, w, _ = images.shape
        text = describe(results)
        return io.NodeOutput(
            [ratio_of(r) for r in results],
            [effective_height(r) for r in results],
            summary_json(results),
            heatmap_image(results, images),
            mask_batch(results, h, w),
            ui=ui.PreviewText(text),
        )
