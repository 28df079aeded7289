"""How long an evaluation will take, said before it runs.

The full suite scores well over a hundred images per sharp face with every scorer; with the
model at 100 patches per image that is hours on a CPU. :func:`estimate_run` builds the first
face's sets (the same for every face in size), times each scorer on a few of its images and
multiplies out, so the command line can say what is coming and how to make it shorter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from .evalsets import SharpFace, SuiteSpec
from .scorers import Scorer, _smallest_side, score_images


@dataclass
class RunEstimate:
    """``images_per_scorer`` images (``n_faces`` faces) and each scorer's measured seconds per image."""

    n_faces: int
    images_per_scorer: int
    seconds_per_image: dict[str, float]

    @property
    def seconds(self) -> float:
        return self.images_per_scorer * sum(self.seconds_per_image.values())

    def describe(self) -> str:
        """One line, e.g. ``9 faces -> 1530 images per scorer; effres 2.1 s/image, ...: about 55 min``."""
        per = ", ".join(f"{name} {s:.2g} s/image" for name, s in self.seconds_per_image.items())
        return (f"{self.n_faces} face{'s' * (self.n_faces != 1)} -> {self.images_per_scorer} images per scorer; "
                f"{per}: about {format_duration(self.seconds)}")


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_run(scorers: Mapping[str, Scorer], faces: Sequence[SharpFace], spec: SuiteSpec | None = None, *,
                 sample: int = 4) -> RunEstimate:
    """Estimate a run of :func:`~effres_core.evaluation.runner.evaluate_many` over ``faces``: count the
    first face's images and time each scorer on ``sample`` of them of one size, batched as the run
    batches them (after one untimed image, so first-call set-up costs do not count)."""
    spec = spec or SuiteSpec()
    if not faces:
        return RunEstimate(0, 0, {name: 0.0 for name in scorers})
    items = [it for group in spec.groups(1, _smallest_side(scorers)) for it in group.build(faces[:1])]
    by_shape: dict[tuple, list] = {}
    for it in items:
        by_shape.setdefault(tuple(it.image.shape[-2:]), []).append(it.image)
    same = max(by_shape.values(), key=len)
    picked = [same[i * len(same) // sample] for i in range(min(sample, len(same)))]
    per_image = {}
    for name, scorer in scorers.items():
        score_images(scorer, picked[:1], batch_size=1)
        start = time.perf_counter()
        score_images(scorer, picked, batch_size=len(picked))
        per_image[name] = (time.perf_counter() - start) / max(1, len(picked))
    return RunEstimate(len(faces), len(items) * len(faces), per_image)
