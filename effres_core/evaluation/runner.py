"""Evaluate any sharpness scorer on generated sets with known truth, or on folders ranked by labels.

A *scorer* is any callable ``[B, 3, H, W]`` float RGB in [0, 1] -> ``B`` numbers (higher = sharper);
give it ``is_ratio = True`` when its numbers are effective resolution ratios, which adds the
mean absolute error against the true factor. :func:`model_scorer` wraps an EffRes model, and
:data:`effres_core.evaluation.baselines.BASELINES` holds the three classical baselines.

Example (not a doctest: it needs a model and a folder of faces)::

    from effres_core.evaluation.evaluate import evaluate_many, model_scorer, format_markdown
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
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .evalsets import EvalGroup, EvalItem, SharpFace, SuiteSpec, load_sharp_faces
from .metrics import mean_abs_error, nanmean, pra, srcc

logger = logging.getLogger("effres")

Scorer = Callable[[torch.Tensor], Sequence[float]]
#: True factors the mean absolute error is computed on (below 1/8 little is left to measure).
MAE_RANGE = (1 / 8, 1.0)


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


def jsonable(obj):
    """A copy of a report with NaN/inf replaced by None, so it is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


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

    from .evalsets import _face_square, _resolve_detector
    from ..measure.imageio import ImageLoadError, load_image

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


# ------------------------------------------------------------------------------------- reporting

def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_markdown(reports: Mapping[str, dict]) -> str:
    """Markdown tables with the scorers side by side (``reports`` as :func:`evaluate_many` returns)."""
    names = list(reports)
    if not names:
        return ""
    out = []
    first = reports[names[0]]
    flavours = [f for f in ("unseen", "seen", "all") if f in first.get("mixed", {})]
    if flavours:
        out.append("### Mixed folders (10 versions of one face at 10 true factors, each with its own "
                   "resizers and nuisance)\n")
        header = ["scorer", "folders", "folder SRCC", "folder PRA", "pooled SRCC", "MAE (factor 1/8..1)",
                  "share within ±0.1"]
        rows = []
        for f in flavours:
            for n in names:
                m = reports[n]["mixed"][f]
                rows.append([n, f, _fmt(m["folder_srcc"]), _fmt(m["folder_pra"]), _fmt(m["pooled_srcc"]),
                             _fmt(m.get("mae")), _fmt(m.get("within_0.1"))])
        out.append(_table(header, rows))
    for key, title in (("ladders", "Plain ladders per training kernel (mean SRCC over faces)"),
                       ("families", "Degradation families training never used (mean SRCC over faces)"),
                       ("robustness", "Robustness: largest relative change of a sharp face's score "
                                      "(mean over faces; 0 is best)")):
        sets = list(first.get(key, {}))
        if sets:
            out.append(f"\n### {title}\n")
            out.append(_table(["set"] + names, [[s] + [_fmt(reports[n][key].get(s)) for n in names] for s in sets]))
    labelled = [n for n in names if "labels" in reports[n]]
    if labelled:
        out.append("\n### Labelled folders\n")
        out.append(_table(["scorer", "folder SRCC", "folder PRA", "pooled SRCC", "folders", "images"],
                          [[n, _fmt(reports[n]["labels"]["folder_srcc"]), _fmt(reports[n]["labels"]["folder_pra"]),
                            _fmt(reports[n]["labels"]["pooled_srcc"]), str(reports[n]["labels"]["n_folders"]),
                            str(reports[n]["labels"]["n_images"])] for n in labelled]))
    return "\n".join(out) + "\n"


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


# ------------------------------------------------------------------------------------------ plot

def plot_ratio_vs_factor(report: dict, path: str | Path, size: tuple[int, int] = (640, 520),
                         title: str | None = None) -> Path:
    """Scatter of predicted ratio against true factor on the mixed folders (PIL, no matplotlib):
    the diagonal is perfect, the grey band is ±0.1, colours are the folder flavours."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    left, right, top, bottom = 62, 20, 44, 52
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def xy(t: float, p: float) -> tuple[float, float]:
        return left + t * (w - left - right), h - bottom - p * (h - top - bottom)

    band = [xy(0, 0.1), xy(0.9, 1.0), xy(1, 1), xy(1, 0.9), xy(0.1, 0), xy(0, 0)]
    d.polygon(band, fill=(228, 228, 228))
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        x0, y0 = xy(v, 0)
        d.line([x0, y0, x0, y0 + 5], fill="black")
        d.text((x0 - 10, y0 + 8), f"{v:.2f}", fill="black", font=font)
        x1, y1 = xy(0, v)
        d.line([x1 - 5, y1, x1, y1], fill="black")
        d.text((x1 - 36, y1 - 6), f"{v:.2f}", fill="black", font=font)
        d.line([xy(v, 0), xy(v, 1)], fill=(240, 240, 240))
        d.line([xy(0, v), xy(1, v)], fill=(240, 240, 240))
    d.line([xy(0, 0), xy(1, 1)], fill=(120, 120, 120), width=1)
    d.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    colours = {"seen": (31, 119, 180), "unseen": (230, 110, 20)}
    for t, p, flavour in report.get("points", []):
        if p is None or not math.isfinite(p):
            continue
        x, y = xy(min(max(t, 0), 1), min(max(p, -0.02), 1.02))
        c = colours.get(flavour, (90, 90, 90))
        d.ellipse([x - 3, y - 3, x + 3, y + 3], outline=c, width=2)
    d.text((left + (w - left - right) / 2 - 40, h - 22), "true factor", fill="black", font=font)
    d.text((6, top - 18), "predicted ratio", fill="black", font=font)
    lx = left + 12
    for i, (name, c) in enumerate(colours.items()):
        ly = top + 10 + 16 * i
        d.ellipse([lx, ly, lx + 7, ly + 7], outline=c, width=2)
        d.text((lx + 12, ly - 3), f"{name} nuisances/resizers", fill="black", font=font)
    d.text((left, 6), title or f"{report.get('scorer', '')}: mixed folders", fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
