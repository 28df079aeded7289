"""Evaluate any sharpness scorer on generated sets with known truth, or on folders ranked by labels.

A *scorer* is any callable ``[B, 3, H, W]`` float RGB in [0, 1] -> ``B`` numbers (higher = sharper);
give it ``is_ratio = True`` when its numbers are effective resolution ratios, which adds the
mean absolute error against the true factor. :func:`model_scorer` wraps an EffRes model, and
:data:`effres_core.evaluation.baselines.BASELINES` holds the three classical baselines.

Example (not a doctest: it needs a model and a folder of faces)::

    from effres_core.evaluation import evaluate_many, model_scorer, format_markdown
    reports = evaluate_many({"effres": model_scorer("path/to/model")}, "faces/val", baselines=True)
    print(format_markdown(reports))

What is measured (see :mod:`effres_core.evaluation.evalsets` for how the sets are made):

* ``mixed``: per flavour (``seen``/``unseen``), the mean per-folder SRCC and PRA, the SRCC pooled
  over all folders (does a score mean the same on every face?), and for ratio scorers the mean
  absolute error for true factors in [1/8, 1];
* ``ladders``: mean SRCC per training kernel on plain ladders;
* ``families``: mean SRCC per degradation family training never saw;
* ``robustness``: mean over faces of the largest relative change of the score of a sharp face
  under compression or noise (0 is perfect).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .evalsets import EvalGroup, EvalItem, SharpFace, SuiteSpec, load_sharp_faces
from .metrics import mean_abs_error, nanmean, pra, srcc
from .scorers import Scorer, _is_ratio, _smallest_side, baseline_scorers, score_images

logger = logging.getLogger("effres")

#: True factors the mean absolute error is computed on (below 1/8 little is left to measure).
MAE_RANGE = (1 / 8, 1.0)


# ------------------------------------------------------------------------------------ running sets

@dataclass
class GroupResult:
    kind: str
    name: str
    face: str
    truths: list[float]
    notes: list[str]
    scores: dict[str, list[float]] = field(default_factory=dict)


def run_groups(scorers: Mapping[str, Scorer], faces: Sequence[SharpFace], groups: Sequence[EvalGroup], *,
               progress: bool = True, batch_size: int = 16) -> list[GroupResult]:
    """Build each group's images (one group at a time, so memory stays small) and score them with
    every scorer."""
    from tqdm.auto import tqdm

    results = []
    for group in tqdm(groups, desc="evaluating", unit="set", disable=not progress):
        items = group.build(faces)
        res = GroupResult(group.kind, group.name, faces[group.face].name, [it.truth for it in items],
                          [it.note for it in items])
        for name, scorer in scorers.items():
            res.scores[name] = score_images(scorer, [it.image for it in items], batch_size).tolist()
        results.append(res)
    return results


def _finite(pred: Sequence[float], truth: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(t)
    return p[ok], t[ok]


def _rank_stats(groups: Sequence[GroupResult], name: str, is_ratio: bool, *, with_pra: bool = True) -> dict:
    """Per-folder SRCC/PRA (mean), pooled SRCC and, for ratios, the MAE in :data:`MAE_RANGE`."""
    folder_srcc, folder_pra, all_p, all_t = [], [], [], []
    failed = 0
    for g in groups:
        p, t = _finite(g.scores[name], g.truths)
        failed += len(g.truths) - len(p)
        if len(p) >= 2 and np.ptp(t) > 0:
            folder_srcc.append(srcc(p, t) if np.ptp(p) > 0 else 0.0)  # a constant answer ranks nothing
            if with_pra:
                folder_pra.append(pra(p, t))
        all_p.append(p)
        all_t.append(t)
    out = {"folder_srcc": nanmean(folder_srcc), "n_folders": len(folder_srcc), "n_failed": failed}
    if with_pra:
        out["folder_pra"] = nanmean(folder_pra)
    p, t = (np.concatenate(all_p), np.concatenate(all_t)) if all_p else (np.zeros(0), np.zeros(0))
    out["pooled_srcc"] = srcc(p, t) if len(p) >= 2 and np.ptp(t) > 0 and np.ptp(p) > 0 else float("nan")
    if is_ratio:
        sel = (t >= MAE_RANGE[0] - 1e-9) & (t <= MAE_RANGE[1])
        out["mae"] = mean_abs_error(p[sel], t[sel]) if sel.any() else float("nan")
        out["within_0.1"] = float((np.abs(p[sel] - t[sel]) <= 0.1).mean()) if sel.any() else float("nan")
    return out


def _drift(groups: Sequence[GroupResult], name: str) -> float:
    """Mean over faces of max_i |s_i / s_0 - 1|: how far compression or noise moves the score."""
    values = []
    for g in groups:
        s = np.asarray(g.scores[name], dtype=np.float64)
        if np.isfinite(s).all() and abs(s[0]) > 1e-12:
            values.append(float(np.max(np.abs(s[1:] / s[0] - 1.0))))
    return nanmean(values)


def summarize(results: Sequence[GroupResult], name: str, is_ratio: bool) -> dict:
    """The report of one scorer from the scored groups."""
    by: dict[tuple[str, str], list[GroupResult]] = {}
    for r in results:
        by.setdefault((r.kind, r.name), []).append(r)
    report: dict = {"scorer": name, "is_ratio": is_ratio, "mixed": {}, "ladders": {}, "families": {},
                    "robustness": {}}
    for (kind, set_name), groups in by.items():
        if kind == "mixed":
            report["mixed"][set_name] = _rank_stats(groups, name, is_ratio)
        elif kind == "ladder":
            report["ladders"][set_name] = _rank_stats(groups, name, is_ratio)["folder_srcc"]
        elif kind == "family":
            report["families"][set_name] = _rank_stats(groups, name, False, with_pra=False)["folder_srcc"]
        elif kind == "robustness":
            report["robustness"][set_name] = _drift(groups, name)
    mixed = [g for g in results if g.kind == "mixed"]
    if mixed:
        report["mixed"]["all"] = _rank_stats(mixed, name, is_ratio)
    if report["ladders"]:
        report["ladder_min_srcc"] = float(np.nanmin(list(report["ladders"].values())))
    if report["families"]:
        report["family_min_srcc"] = float(np.nanmin(list(report["families"].values())))
    # (truth, prediction, flavour) of every mixed-folder image, for plots.
    report["points"] = [[t, s, g.name] for g in mixed for t, s in zip(g.truths, g.scores[name]) if math.isfinite(s)]
    return report


def evaluate_many(scorers: Mapping[str, Scorer], sharp_dir: str | Path, *, baselines: bool = False,
                  spec: SuiteSpec | None = None, max_faces: int | None = None, max_side: int = 512,
                  min_side: int = 160, detector="haar", progress: bool = True,
                  faces: Sequence[SharpFace] | None = None) -> dict[str, dict]:
    """Evaluate several scorers on the same generated sets; returns ``{scorer name: report}``.

    Args:
        scorers: ``{name: scorer}``; ``baselines=True`` adds the three classical baselines.
        sharp_dir: folder of sharp face photos (see :func:`~effres_core.evaluation.evalsets.load_sharp_faces`).
        spec: which sets to build (all by default) and the seed.
        max_faces, max_side, min_side, detector: how sharp faces are chosen and cropped.
        faces: already loaded faces (then ``sharp_dir`` only names them in the report).
    """
    scorers = dict(scorers)
    if baselines:
        scorers.update(baseline_scorers())
    if not scorers:
        raise ValueError("no scorers to evaluate")
    spec = spec or SuiteSpec()
    start = time.perf_counter()
    if faces is None:
        faces = load_sharp_faces(sharp_dir, max_side=max_side, min_side=min_side, max_faces=max_faces,
                                 detector=detector)
    results = run_groups(scorers, faces, spec.groups(len(faces), _smallest_side(scorers)), progress=progress)
    seconds = time.perf_counter() - start
    meta = {"sharp_dir": str(sharp_dir), "n_faces": len(faces), "faces": [f.name for f in faces],
            "cropped_by": sorted({f.cropped_by for f in faces}), "max_side": max_side, "seed": spec.seed,
            "seconds_all_scorers": round(seconds, 1)}
    return {name: dict(summarize(results, name, _is_ratio(s)), **meta) for name, s in scorers.items()}


def evaluate(scorer: Scorer, sharp_dir: str | Path, **kwargs) -> dict:
    """The report of one scorer (see :func:`evaluate_many` for the arguments)."""
    name = getattr(scorer, "name", "scorer")
    return evaluate_many({name: scorer}, sharp_dir, **kwargs)[name]


# ---------------------------------------------------------------------------------- labelled sets

def read_labels(csv_path: str | Path) -> list[tuple[str, Path, float]]:
    """Rows ``(folder, image path, label)`` of a labels CSV with a header naming ``path`` and
    ``label`` (and optionally ``folder``; else an image's parent folder is its group). Relative
    paths are relative to the CSV. Higher labels mean sharper."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "path" not in fields or "label" not in fields:
            raise ValueError(f"{csv_path}: needs a header with 'path' and 'label' columns (and optionally "
                             f"'folder'), got {reader.fieldnames}")
        rows = []
        for line, row in enumerate(reader, start=2):
            path = Path(row[fields["path"]].strip())
            path = path if path.is_absolute() else csv_path.parent / path
            try:
                label = float(row[fields["label"]])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{csv_path}:{line}: label {row[fields['label']]!r} is not a number") from err
            folder = row[fields["folder"]].strip() if "folder" in fields else str(path.parent)
            rows.append((folder, path, label))
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    return rows


def evaluate_labels(scorers: Mapping[str, Scorer], csv_path: str | Path, *, detector="haar",
                    progress: bool = True) -> dict[str, dict]:
    """Per-folder SRCC/PRA (mean) and pooled SRCC of each scorer against human (or other) labels.

    Images are scored at their own resolution (resizing would change the answer), cropped to
    the largest face when a detector finds one.
    """
    from tqdm.auto import tqdm

    from ..measure.imageio import ImageLoadError, load_image
    from .evalsets import _face_square, _resolve_detector

    det, _ = _resolve_detector(detector)
    groups: dict[str, GroupResult] = {}
    for folder, path, label in tqdm(read_labels(csv_path), desc="labelled images", disable=not progress):
        try:
            rgb = load_image(path)
        except ImageLoadError as err:
            logger.warning("evaluation: skipping %s", err)
            continue
        box = _face_square(rgb, det, 0) if det is not None else None
        if box is not None:
            x0, y0, x1, y1 = box
            rgb = rgb[y0:y1, x0:x1]
        img = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255
        g = groups.setdefault(folder, GroupResult("labels", "labels", folder, [], []))
        g.truths.append(label)
        g.notes.append(str(path))
        for name, scorer in scorers.items():
            g.scores.setdefault(name, []).extend(score_images(scorer, [img]).tolist())
    if not groups:
        raise ValueError(f"{csv_path}: none of the listed images could be read")
    return {name: dict(_rank_stats(list(groups.values()), name, False), n_images=sum(len(g.truths) for g in
                                                                                       groups.values()))
            for name in scorers}


# ------------------------------------------------------------------------------ fast training hook

_QUICK_CACHE: dict[str, list[tuple[str, str, list[EvalItem]]]] = {}


def _quick_key(sharp_dir: Path, max_side: int, max_faces: int | None, seed: int, flavours: Sequence[str]) -> str:
    from ..measure.imageio import find_images

    h = hashlib.sha256(f"v1|{max_side}|{max_faces}|{seed}|{','.join(flavours)}".encode())
    for f in find_images([sharp_dir]):
        st = f.stat()
        h.update(f"{f.name}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _quick_folders(sharp_dir: Path, cache_dir, max_side, max_faces, seed, flavours, min_side, min_face):
    key = _quick_key(sharp_dir, max_side, max_faces, seed, flavours) + f"-{min_side}-{min_face}"
    if key in _QUICK_CACHE:
        return _QUICK_CACHE[key]
    cache_file = Path(cache_dir) / f"quick_validation_{key}.pt" if cache_dir is not None else None
    folders = None
    if cache_file is not None and cache_file.is_file():
        try:
            stored = torch.load(cache_file, weights_only=True)
            folders = [(flav, face, [EvalItem(img.float() / 255, t, "") for img, t in zip(imgs, truths)])
                       for flav, face, imgs, truths in stored]
        except Exception as err:  # a damaged cache is rebuilt, never trusted
            logger.warning("quick validation: ignoring cache %s (%s)", cache_file, err)
    if folders is None:
        faces = load_sharp_faces(sharp_dir, max_side=max_side, min_side=min_face, max_faces=max_faces)
        spec = SuiteSpec(mixed=flavours, ladders=(), families=(), robustness=(), seed=seed)
        folders = [(g.name, faces[g.face].name, g.build(faces)) for g in spec.groups(len(faces), min_side)]
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            # uint8 is exact: the items are quantised to 8 bits already.
            torch.save([(flav, face, [it.image.mul(255).round().to(torch.uint8) for it in items],
                         [it.truth for it in items]) for flav, face, items in folders], cache_file)
    _QUICK_CACHE[key] = folders
    return folders


def quick_validation(scorer: Scorer, sharp_dir: str | Path, cache_dir: str | Path | None = None, *,
                     max_side: int = 256, min_side: int = 160, max_faces: int | None = None, seed: int = 0,
                     flavours: Sequence[str] = ("seen", "unseen")) -> dict[str, float]:
    """Mixed-folder metrics, fast enough to run after every training epoch.

    The folders are generated once (kept in memory, and in ``cache_dir`` as uint8 tensors when
    given) from face crops of at most ``max_side`` pixels. Give the scorer few patches (e.g.
    :class:`RatioScorer` with ``n_patches=16``) to keep it quick.

    Returns ``folder_srcc``, ``folder_pra``, ``pooled_srcc`` (and ``mae``, ``within_0.1`` for ratio
    scorers) over all folders, the same per flavour as ``<flavour>_<metric>``, and ``seconds``.
    """
    start = time.perf_counter()
    folders = _quick_folders(Path(sharp_dir), cache_dir, max_side, max_faces, seed, tuple(flavours),
                             _smallest_side({"s": scorer}), min(min_side, max_side))
    is_ratio = _is_ratio(scorer)
    results = []
    for flav, face, items in folders:
        res = GroupResult("mixed", flav, face, [it.truth for it in items], [it.note for it in items])
        res.scores["s"] = score_images(scorer, [it.image for it in items]).tolist()
        results.append(res)
    out = {k: v for k, v in _rank_stats(results, "s", is_ratio).items() if not k.startswith("n_")}
    for flav in flavours:
        stats = _rank_stats([r for r in results if r.name == flav], "s", is_ratio)
        out.update({f"{flav}_{k}": v for k, v in stats.items() if not k.startswith("n_")})
    out["seconds"] = time.perf_counter() - start
    return out
