"""Fit the monotone calibration of a model on sets made from the TRAINING faces, and write a
calibrated copy of the model (same weights, knots in ``config.json``).

    python train/calibrate.py --model effres_core/model/weights/default --sharp ../shared/data/faces/train \\
        --out exports/calibrated [--seeds 1,2] [--scores scores.npz]

The pairs are (raw patch-median score, true factor) of mixed folders of the ``seen`` flavour
(training kernels and nuisances; the evaluation's ``unseen`` resizers and nuisances stay unseen),
built from ``--sharp`` with seeds other than the evaluation report's. Never point ``--sharp`` at
the faces you evaluate on: the report's numbers would no longer be on unseen data. ``--scores``
keeps every image's raw patch scores (and reuses them when the file exists), which
``benchmarks/measure_reliability.py`` reads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from effres_core.model import hub  # noqa: E402
from effres_core.model.calibration import fit_monotone, monotone_map  # noqa: E402


def collect_scores(net, sharp: str | Path, seeds: list[int], n_patches: int = 25, max_side: int = 384,
                   flavours: tuple[str, ...] = ("seen",)) -> dict[str, np.ndarray]:
    """Raw patch scores of every image of the mixed folders built from ``sharp``, per seed."""
    from effres_core.evaluation.evalsets import SuiteSpec, load_sharp_faces
    from effres_core.measure.scoring import patch_scores

    faces = load_sharp_faces(sharp, max_side=max_side)
    rows = []
    for seed in seeds:
        spec = SuiteSpec(mixed=flavours, ladders=(), families=(), robustness=(), seed=seed)
        for group in spec.groups(len(faces)):
            for item in group.build(faces):
                with torch.inference_mode():
                    scores, _ = patch_scores(net, item.image, n_patches=n_patches, chunk_size=32)
                kept = scores[0][~torch.isnan(scores[0])].float().numpy()
                rows.append((seed, group.face, item.truth, kept, group.name))
    width = max(len(r[3]) for r in rows)
    patches = np.full((len(rows), width), np.nan, np.float32)
    for i, r in enumerate(rows):
        patches[i, :len(r[3])] = r[3]
    return {"seed": np.array([r[0] for r in rows]), "face": np.array([r[1] for r in rows]),
            "truth": np.array([r[2] for r in rows], dtype=np.float64), "patches": patches,
            "names": np.array([f.name for f in faces]), "flavour": np.array([r[4] for r in rows])}


def lower_median(patches: np.ndarray) -> np.ndarray:
    """Per-row median of the finite values, the lower middle one for even counts (torch's median)."""
    out = np.full(len(patches), np.nan)
    for i, row in enumerate(patches):
        v = np.sort(row[np.isfinite(row)])
        if len(v):
            out[i] = v[(len(v) - 1) // 2]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder or file (default: the bundled model)")
    p.add_argument("--sharp", required=True, help="folder of TRAINING faces (never the evaluation faces)")
    p.add_argument("--out", required=True, help="folder for the calibrated copy")
    p.add_argument("--seeds", default="1,2", help="seeds of the mixed folders (the report uses 0)")
    p.add_argument("--patches", type=int, default=25, help="patches per image (the report's 25)")
    p.add_argument("--max-side", type=int, default=384, help="face crop size (the report's 384)")
    p.add_argument("--bins", type=int, default=12, help="knots of the map")
    p.add_argument("--scores", help="npz of raw patch scores: reused when it exists, else written")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    if 0 in seeds:
        raise SystemExit("error: seed 0 builds the evaluation report's folders; use other seeds")
    net = hub.load_pretrained(args.model).set_calibration(None).eval()
    start = time.time()
    if args.scores and Path(args.scores).is_file():
        data = dict(np.load(args.scores))
        print(f"reusing {len(data['truth'])} scored images from {args.scores}", file=sys.stderr)
    else:
        from effres_core.model.net import fold_batchnorm

        data = collect_scores(fold_batchnorm(net), args.sharp, seeds, args.patches, args.max_side)
        if args.scores:
            np.savez(args.scores, **data)
    pred, truth = lower_median(data["patches"]), data["truth"]
    xs, ys = fit_monotone(pred, truth, bins=args.bins)
    mapped = monotone_map(torch.from_numpy(pred), torch.tensor(xs, dtype=torch.float64),
                          torch.tensor(ys, dtype=torch.float64)).clamp(0, 1).numpy()
    sel = (truth >= 1 / 8) & np.isfinite(pred)
    err_before, err_after = np.abs(np.clip(pred, 0, 1) - truth)[sel], np.abs(mapped - truth)[sel]
    fit = {"train_mae_before": float(err_before.mean()), "train_mae_after": float(err_after.mean()),
           "train_within_0.1_before": float(np.mean(err_before <= 0.1)),
           "train_within_0.1_after": float(np.mean(err_after <= 0.1))}
    calibration = {"x": xs, "y": ys, "fitted_on": f"mixed folders (seen flavour, seeds {args.seeds}) of "
                   f"{len(data['names'])} faces in {Path(args.sharp).name}/, {len(truth)} images, "
                   f"{args.patches} patches, {args.max_side} px crops", **fit}
    net.set_calibration(calibration)
    extra = {k: v for k, v in net.config.items() if k not in ("backbone", "patch_size", "width")}
    out = hub.save_pretrained(net, args.out, extra_config=extra)
    source = hub.resolve_weights(args.model).parent
    card = source / "MODEL_CARD.md"
    if card.is_file() and card.resolve() != (out / card.name).resolve():
        shutil.copy(card, out / card.name)
    report = {"images": int(len(truth)), "seconds": round(time.time() - start, 1), "knots": calibration, **fit}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
