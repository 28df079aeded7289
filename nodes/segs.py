"""EffResFaceSEGS and EffResSEGSFilter: Impact Pack SEGS made from effres' face detections, and
split by each face's effective resolution (so a Detailer gets only the soft faces).

SEGS are plain Python values (``((h, w), [SEG, ...])``); nothing here imports Impact Pack. The
structure and the matched Impact Pack version are in :mod:`effres_core.integrations.comfy_segs`.
"""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..effres_core.integrations.comfy_segs import (KEEP_MODES, UNSCORED, combined_mask, describe_scores,
                                                   faces_to_segs, score_segs, split_segs)
from ..effres_core.measure.faces import get_detector
from ..effres_core.measure.imageio import tensor_to_rgb_list
from ._common import check_image, image_to_rgb
from .loader import EffResModel

#: Impact Pack's SEGS socket type; any node that takes or gives "SEGS" connects.
Segs = io.Custom("SEGS")


class EffResFaceSEGS(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResFaceSEGS",
            display_name="effres face SEGS",
            category="effres",
            description="Finds the faces with the effres model's detector and returns them as Impact Pack SEGS "
                        "(crop, box mask, box), for a Detailer or the effres SEGS filter.",
            inputs=[
                EffResModel.Input("effres_model", tooltip="From 'Load effres model' (its detector is used)."),
                io.Image.Input("image", tooltip="One image (SEGS describe a single image)."),
                io.Float.Input("crop_factor", default=3.0, min=1.0, max=10.0, step=0.1,
                               tooltip="Detail crop size in face-box sizes, as in Impact Pack's detectors."),
                io.Int.Input("dilation", default=0, min=-512, max=512, step=1,
                             tooltip="Grow (or, negative, shrink) each face's box mask by this many pixels."),
                io.Int.Input("drop_size", default=10, min=1, max=4096, step=1,
                             tooltip="Leave out faces whose box has a side of this many pixels or less."),
                io.String.Input("label", default="face", tooltip="The label each SEG carries."),
            ],
            outputs=[
                Segs.Output(display_name="segs"),
                io.Int.Output(display_name="count", tooltip="How many faces were found."),
            ],
        )

    @classmethod
    def execute(cls, effres_model, image, crop_factor: float = 3.0, dilation: int = 0, drop_size: int = 10,
                label: str = "face") -> io.NodeOutput:
        image = check_image(image)
        if image.shape[0] != 1:
            raise ValueError(f"effres face SEGS: SEGS describe one image, got a batch of {image.shape[0]}; "
                             f"split the batch first")
        detect, name = get_detector(effres_model.detector_name, str(effres_model.device))
        colour, _ = image_to_rgb(image)
        rgb = tensor_to_rgb_list(colour.float().cpu())[0]
        segs = faces_to_segs(image, detect(rgb), crop_factor=crop_factor, dilation=dilation,
                             drop_size=drop_size, label=label)
        text = f"{len(segs[1])} face(s) found ({name} detector)"
        return io.NodeOutput(segs, len(segs[1]), ui=ui.PreviewText(text))


class EffResSEGSFilter(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResSEGSFilter",
            display_name="effres SEGS filter",
            category="effres",
            description="Scores the face of every SEG and splits the SEGS by effective resolution: send 'kept' to a "
                        "Detailer to detail only the soft faces and leave the sharp ones untouched.",
            is_output_node=True,
            inputs=[
                EffResModel.Input("effres_model", tooltip="From 'Load effres model'."),
                Segs.Input("segs", tooltip="SEGS from any Impact Pack detector or from 'effres face SEGS'."),
                io.Float.Input("min_ratio", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Lower end of the ratio range (1 = fully sharp, 0.5 = looks 2x upscaled)."),
                io.Float.Input("max_ratio", default=0.45, min=0.0, max=1.0, step=0.01,
                               tooltip="Upper end of the ratio range. Default: faces at most 0.45 (soft ones)."),
                io.Int.Input("min_effective_pixels", default=0, min=0, max=16384, step=8,
                             tooltip="Also require ratio x the face box's shorter side to reach this many "
                                     "pixels to be in range; 0 = off."),
                io.Combo.Input("keep", options=list(KEEP_MODES), default="in range",
                               tooltip="Which faces go to 'kept': those in the range, or those outside it."),
                io.Combo.Input("unscored", options=list(UNSCORED), default="kept",
                               tooltip="Where faces that could not be scored go."),
                io.Image.Input("image", optional=True,
                               tooltip="Optional: the image the SEGS were made from; faces are cut from it "
                                       "(needed for SEGS without cropped images, e.g. made from masks)."),
            ],
            outputs=[
                Segs.Output(display_name="kept", tooltip="The SEGS to detail (same image size as the input)."),
                Segs.Output(display_name="rejected", tooltip="The other SEGS."),
                io.String.Output(display_name="summary", tooltip="One line per face: ratio, effective size, where it went."),
                io.Mask.Output(display_name="kept_mask", tooltip="The kept faces' masks on the whole image."),
            ],
        )

    @classmethod
    def execute(cls, effres_model, segs, min_ratio: float = 0.0, max_ratio: float = 0.45,
                min_effective_pixels: int = 0, keep: str = "in range", unscored: str = "kept",
                image=None) -> io.NodeOutput:
        if image is not None:
            image = check_image(image)[:1]
        if min_ratio > max_ratio:
            raise ValueError(f"effres SEGS filter: min_ratio {min_ratio} is above max_ratio {max_ratio}")
        scores = score_segs(effres_model, segs, image)
        kept, rejected, flags = split_segs(segs, scores, min_ratio=min_ratio, max_ratio=max_ratio,
                                           min_effective_pixels=min_effective_pixels, keep=keep, unscored=unscored)
        text = describe_scores(scores, flags) + f"\nkept {len(kept[1])} of {len(scores)}"
        mask = combined_mask(kept)
        return io.NodeOutput(kept, rejected, text, mask, ui=ui.PreviewText(text))
