"""EffResBestOf: the sharpest image of a batch, its index, and every face cut out at one size."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..effres_core.measure.bestof import RANK_BY, best_index, describe_faces, face_crops
from ._common import NOT_SCORED, block_branch, check_image, image_to_rgb, rgb_to_image, score_images
from .loader import EffResModel


class EffResBestOf(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResBestOf",
            display_name="effres best of batch",
            category="effres",
            description="Scores every image of a batch; returns the sharpest one, its index, and all faces as crops "
                        "of one size with their ratios.",
            is_output_node=True,
            inputs=[
                EffResModel.Input("effres_model", tooltip="From 'Load effres model'."),
                io.Image.Input("images", tooltip="The batch to choose from (e.g. one seed per image)."),
                io.Combo.Input("rank_by", options=list(RANK_BY), default="image ratio",
                               tooltip="'image ratio': all faces pooled; 'worst face': the image whose softest face "
                                       "is sharpest (group shots); 'best face': the single sharpest face."),
                io.Int.Input("crop_size", default=256, min=16, max=4096, step=8,
                             tooltip="Side of the square face crops, in pixels."),
                io.Float.Input("crop_margin", default=0.25, min=0.0, max=2.0, step=0.05,
                               tooltip="Room around each face in the crops, in face-box sizes."),
            ],
            outputs=[
                io.Image.Output(display_name="best_image", tooltip="The best image (the first one if none has a face)."),
                io.Int.Output(display_name="best_index", tooltip="Its index in the batch; -1 if no image has a face."),
                io.Image.Output(display_name="face_crops",
                                tooltip="Every face of every image, in batch order; nodes behind it are skipped "
                                        "when there is no face."),
                io.Float.Output(display_name="face_ratios", is_output_list=True,
                                tooltip="The ratio of each face crop; -1 where it could not be scored."),
                io.String.Output(display_name="summary", tooltip="Every face with its size, place and ratio."),
            ],
        )

    @classmethod
    def execute(cls, effres_model, images, rank_by: str = "image ratio", crop_size: int = 256,
                crop_margin: float = 0.25) -> io.NodeOutput:
        images = check_image(images)
        if images.shape[0] == 0:
            raise ValueError("effres best of batch: the batch is empty")
        if rank_by not in RANK_BY:
            raise ValueError(f"effres best of batch: rank_by must be one of {RANK_BY}, got {rank_by!r}")
        results = score_images(effres_model, images)
        best = best_index(results, rank_by)
        rgb, alpha = image_to_rgb(images)
        crops, ratios, _ = face_crops(rgb.float(), results, crop_size, crop_margin)
        text = describe_faces(results, best, rank_by)
        if crops.shape[0]:
            face_images = rgb_to_image(crops, None, 3).to(images.dtype)
        else:
            face_images = block_branch(None)
        pick = 0 if best is None else best
        return io.NodeOutput(images[pick:pick + 1], -1 if best is None else best, face_images,
                             [NOT_SCORED if r is None else float(r) for r in ratios], text,
                             ui=ui.PreviewText(text))
