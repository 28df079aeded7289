"""Scorers for the evaluation suites: any callable ``[B, 3, H, W]`` float RGB in [0, 1] -> ``B`` numbers
(higher = sharper). :func:`model_scorer` wraps an EffRes model; :func:`baseline_scorers` gives the classical
baselines; :func:`score_images` runs a scorer over images of mixed sizes."""

from __future__ import annotations

import logging
import os
from typing import Callable, Sequence

import numpy as np
import torch

logger = logging.getLogger("effres")

Scorer = Callable[[torch.Tensor], Sequence[float]]


# ---------------------------------------------------------------------------------------- scorers

class RatioScorer:
    """Score images with an EffRes network: the paper's patch-median ratio on the whole image.

    The crops of the evaluation sets are already faces, so no detection is needed; the network
    is switched to eval mode for the call and put back as it was (safe inside training).
    """

    is_ratio = True

    def __init__(self, net: torch.nn.Module, *, n_patches: int = 100, reduce: str = "median",
                 device: str | torch.device | None = None, chunk_size: int = 64, name: str = "effres"):
        self.net, self.n_patches, self.reduce, self.chunk_size, self.name = net, n_patches, reduce, chunk_size, name
        self.device = torch.device(device) if device is not None else next(net.parameters()).device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from ..measure.scoring import effective_resolution_ratio

        was_training = self.net.training
        self.net.eval()
        try:
            with torch.inference_mode():
                return effective_resolution_ratio(self.net, images.to(self.device), n_patches=self.n_patches,
                                                  reduce=self.reduce, chunk_size=self.chunk_size).float().cpu()
        finally:
            self.net.train(was_training)


def model_scorer(model, *, n_patches: int = 100, reduce: str = "median", device=None,
                 name: str = "effres") -> RatioScorer:
    """A scorer from a model id/folder/file (see :func:`effres_core.model.hub.resolve_weights`), an
    ``EffRes`` pipeline (its ``.inference_net``) or an :class:`~effres_core.model.net.EffResNet`."""
    if isinstance(model, (str, os.PathLike)) or model is None:
        from ..model.hub import load_pretrained
        from ..model.net import fold_batchnorm

        net = fold_batchnorm(load_pretrained(model))  # scoring only: fold BatchNorm for speed
        if device is not None:
            net = net.to(device)
    elif isinstance(model, torch.nn.Module):
        from ..model.net import scoring_net

        net = scoring_net(model)
    else:
        raise TypeError(f"cannot make a scorer from {type(model).__name__}; pass a model id, EffRes or EffResNet")
    return RatioScorer(net, n_patches=n_patches, reduce=reduce, device=device, name=name)


def baseline_scorers() -> dict[str, Scorer]:
    from .baselines import BASELINES

    return dict(BASELINES)


def _smallest_side(scorers) -> int:
    """Smallest image side the sets may produce: a patch of every model, with a little room."""
    sizes = [int(getattr(getattr(s, "net", None), "patch_size", 0) or 0) for s in scorers.values()]
    return max(sizes + [56]) + 8


def _is_ratio(scorer) -> bool:
    return bool(getattr(scorer, "is_ratio", False))


def score_images(scorer: Scorer, images: Sequence[torch.Tensor], batch_size: int = 16) -> np.ndarray:
    """Score ``[1, 3, H, W]`` images of possibly different sizes, batching equal sizes together.
    Returns a float array, NaN where the scorer gives no answer."""
    out = np.full(len(images), np.nan)
    by_shape: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        by_shape.setdefault(tuple(img.shape[-2:]), []).append(i)
    for idx in by_shape.values():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            batch = torch.cat([images[i] for i in chunk])
            try:
                values = scorer(batch)
            except ValueError as err:  # e.g. an image smaller than one patch: no answer, not a crash
                logger.warning("evaluation: scorer failed on %s images: %s", tuple(batch.shape[-2:]), err)
                continue
            values = torch.as_tensor(np.asarray(values.detach().cpu() if torch.is_tensor(values) else values,
                                                dtype=np.float64)).flatten().numpy()
            if values.shape[0] != len(chunk):
                raise ValueError(f"scorer returned {values.shape[0]} scores for {len(chunk)} images")
            out[chunk] = values
    return out
