"""Compare candidate models on the same sets, raw and with a calibration fitted on training faces.

    python benchmarks/compare_models.py NAME=MODEL_DIR [NAME=MODEL_DIR ...] --train ../shared/data/faces/train \\
        --val ../shared/data/faces/val [--holdout-seed 2] [--cache DIR] [--json OUT.json]

For every model: raw patch scores (``train/calibrate.py``'s ``collect_scores``: 25 patches, 384 px
crops) of the training faces' mixed folders (seen flavour, seed 1) and of the validation faces'
mixed folders (seen and unseen flavours, seed 0, the evaluation report's). A monotone map is fitted
on the training sets only (``fit_monotone``, 12 knots) and applied to both; ``--holdout-seed``
also scores a second draw of training-face folders the map never saw (``train_holdout``), the
fair column to choose on, since a map's fit on seed 1 is in-sample. One table row per model
and per calibration, with the issue's targets as columns. Choose among models on the ``train``
columns; the ``val`` columns are the unseen check. Scores are cached per model in ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from effres_core.evaluation.metrics import srcc  # noqa: E402
from effres_core.model import hub  # noqa: E402
from effres_core.model.calibration import fit_monotone, monotone_map  # noqa: E402
from effres_core.model.net import fold_batchnorm  # noqa: E402
from train.calibrate import collect_scores, lower_median  # noqa: E402


def scores(net, sharp: str, seeds: list[int], flavours: tuple[str, ...], cache: Path | None) -> dict:
    if cache and cache.is_file():
        return dict(np.load(cache))
    data = collect_scores(net, sharp, seeds, flavours=flavours)
    if cache:
        np.savez(cache, **data)
    return data


def metrics(pred: np.ndarray, data: dict) -> dict:
    """The issue's numbers for one set of per-image predictions."""
    ok = np.isfinite(pred)  # an image with no usable patch has no score: left out, and counted
    data = {k: v[ok] for k, v in data.items() if k in ("truth", "seed", "face", "flavour")}
    truth, pred = data["truth"], np.clip(pred[ok], 0, 1)
    sel = truth >= 1 / 8 - 1e-9
    err = np.abs(pred - truth)[sel]
    folders = {}
    for i, key in enumerate(zip(data["seed"], data["face"], data["flavour"])):
        folders.setdefault(key, []).append(i)
    per_folder = [srcc(pred[idx], truth[idx]) for idx in folders.values() if len(idx) > 2]
    return {"top_median": float(np.median(pred[truth >= 0.999])) if np.any(truth >= 0.999) else float("nan"),
            "half_median": float(np.median(pred[(truth >= 0.45) & (truth <= 0.55)]))
            if np.any((truth >= 0.45) & (truth <= 0.55)) else float("nan"),
            "mae": float(err.mean()), "within_0.1": float(np.mean(err <= 0.1)),
            "folder_srcc": float(np.nanmean(per_folder)), "pooled_srcc": float(srcc(pred, truth)),
            "images": int(len(truth)), "unscored": int((~ok).sum())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    p.add_argument("--train", required=True, help="training faces (the map is fitted there)")
    p.add_argument("--val", required=True, help="validation faces (never fitted on)")
    p.add_argument("--holdout-seed", type=int, default=0, help="also score training folders of this seed (not 0, 1)")
    p.add_argument("--cache", help="folder for per-model raw scores")
    p.add_argument("--json", help="write every number here")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.holdout_seed in (0, 1) and args.holdout_seed:
        p.error("--holdout-seed must differ from 0 (the report's) and 1 (the map's)")
    cache = Path(args.cache) if args.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    rows = {}
    for spec in args.models:
        name, _, folder = spec.partition("=")
        net = fold_batchnorm(hub.load_pretrained(folder).set_calibration(None).eval())
        train = scores(net, args.train, [1], ("seen",), cache / f"{name}-train.npz" if cache else None)
        val = scores(net, args.val, [0], ("seen", "unseen"), cache / f"{name}-val.npz" if cache else None)
        raw_train, raw_val = lower_median(train["patches"]), lower_median(val["patches"])
        xs, ys = fit_monotone(raw_train, train["truth"], bins=12)

        def mapped(v):
            return monotone_map(torch.from_numpy(v), torch.tensor(xs, dtype=torch.float64),
                                torch.tensor(ys, dtype=torch.float64)).numpy()

        rows[f"{name} raw"] = {"train": metrics(raw_train, train), "val": metrics(raw_val, val)}
        rows[f"{name} calibrated"] = {"train": metrics(mapped(raw_train), train), "val": metrics(mapped(raw_val), val),
                                      "knots": {"x": xs, "y": ys}}
        if args.holdout_seed:
            held = scores(net, args.train, [args.holdout_seed], ("seen",),
                          cache / f"{name}-train{args.holdout_seed}.npz" if cache else None)
            raw_held = lower_median(held["patches"])
            rows[f"{name} raw"]["train_holdout"] = metrics(raw_held, held)
            rows[f"{name} calibrated"]["train_holdout"] = metrics(mapped(raw_held), held)
        print(f"{name}: scored", file=sys.stderr)
    cols = ["top_median", "half_median", "mae", "within_0.1", "folder_srcc", "pooled_srcc"]
    held = " | train holdout mae | train holdout within_0.1" if args.holdout_seed else ""
    print("| model | train mae | train within_0.1" + held + " | " + " | ".join(f"val {c}" for c in cols) + " |")
    print("|---" * (3 + len(cols) + (2 if held else 0)) + "|")
    for name, r in rows.items():
        cells = [f"{r['train']['mae']:.3f}", f"{r['train']['within_0.1']:.1%}"]
        if held:
            cells += [f"{r['train_holdout']['mae']:.3f}", f"{r['train_holdout']['within_0.1']:.1%}"]
        cells += [f"{r['val'][c]:.1%}" if c == "within_0.1" else f"{r['val'][c]:.3f}" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
