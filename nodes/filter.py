"""EffResFilter: keep the sharp images of a batch (a ratio / pixel threshold, or the top N)."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io, ui

from ..effres_core.measure.selection import select
from ._common import block_branch, check_image, describe, effective_height, score_images
from .loader import EffResModel

ORDERS = {"input order": "input", "best first": "best"}
WHEN_NONE_PASS = {"pass the best one": "best", "stop this branch": "none"}


class EffResFilter(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResFilter",
            display_name="effres filter",
            category="effres",
            description="Splits a batch into sharp (kept) and soft (rejected) images by effective resolution.",
            inputs=[
                EffResModel.Input("effres_model", tooltip="From 'Load effres model'."),
                io.Image.Input("images", tooltip="The batch to filter."),
                io.Float.Input("min_ratio", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Keep images whose effective resolution ratio is at least this "
                                       "(1 = fully sharp, 0.5 = looks like a 2x upscale). 0 = any scored image."),
                io.Int.Input("min_effective_pixels", default=0, min=0, max=16384, step=8,
                             tooltip="Also require ratio x image height to reach this many pixels; 0 = off."),
                io.Int.Input("top_n", default=0, min=0, max=4096,
                             tooltip="Keep at most this many of the passing images, the sharpest first; 0 = all."),
                io.Combo.Input("order", options=list(ORDERS), default="input order",
                               tooltip="Order of the kept images: as in the input, or sharpest first."),
                io.Combo.Input("when_none_pass", options=list(WHEN_NONE_PASS), default="pass the best one",
                               tooltip="If no image passes: keep the single best scored image anyway, or stop "
                                       "the nodes behind 'kept' with a message (other branches still run)."),
            ],
            outputs=[
                io.Image.Output(display_name="kept", tooltip="Images that passed."),
                io.Image.Output(display_name="rejected",
                                tooltip="Images that did not pass; nodes behind it are skipped when there are none."),
                io.String.Output(display_name="kept_indices", tooltip="JSON list of the kept images' input indices."),
                io.Int.Output(display_name="count", tooltip="How many images were kept."),
            ],
        )

    @classmethod
    def execute(cls, effres_model, images, min_ratio: float = 0.5, min_effective_pixels: int = 0, top_n: int = 0,
                order: str = "input order", when_none_pass: str = "pass the best one") -> io.NodeOutput:
        images = check_image(images)
        if order not in ORDERS or when_none_pass not in WHEN_NONE_PASS:
            raise ValueError(f"order must be one of {list(ORDERS)} and when_none_pass one of {list(WHEN_NONE_PASS)}")
        results = score_images(effres_model, images)
        ratios = [r.ratio for r in results]
        pixels_ok = [effective_height(r) >= min_effective_pixels for r in results]
        sel = select(ratios, threshold=min_ratio, top_n=top_n, passes=pixels_ok if min_effective_pixels else None,
                     order=ORDERS[order], fallback=WHEN_NONE_PASS[when_none_pass])
        marks = ["kept" + (" (best of none passing)" if sel.fallback_used else "") if i in sel.kept else "rejected"
                 for i in range(len(results))]
        text = describe(results, marks)
        device = images.device
        kept = images[torch.tensor(sel.kept, dtype=torch.long, device=device)] if sel.kept else None
        rejected = images[torch.tensor(sel.rejected, dtype=torch.long, device=device)] if sel.rejected else None
        if kept is None:
            reason = ("the batch is empty" if images.shape[0] == 0 else
                      f"no image passed (min_ratio {min_ratio}, min_effective_pixels {min_effective_pixels})"
                      + ("" if any(r is not None for r in ratios) else "; no image had a usable face"))
            text += f"\nkept: none: {reason}"
            kept = block_branch(f"effres filter: {reason}")  # the nodes behind 'kept' stop with this message
        if rejected is None:
            rejected = block_branch(None)  # nothing rejected: skip that branch silently
        return io.NodeOutput(kept, rejected, json.dumps(sel.kept), len(sel.kept),
                             ui=ui.PreviewText(text))
