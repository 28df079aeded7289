"""When is a score unreliable? Error against the true factor as a function of the patch spread
(IQR) and of the patch count, from the raw patch scores that ``train/calibrate.py --scores`` keeps.

    python benchmarks/measure_reliability.py SCORES.npz [--model MODEL]   # MODEL: apply its calibration

Prints two tables: (1) images binned by the IQR of their (clipped) patch scores, with the median
absolute error and the share within +-0.1 of the true factor; (2) for k patches drawn at random
from an image's kept patches, how far the median of k moves from the median of all of them
(90th percentile over images and draws). The thresholds in ``effres_core/measure/reliability.py``
are read off these tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from effres_core.model import hub  # noqa: E402


def lower_median(v: np.ndarray) -> float:
    v = np.sort(v)
    return float(v[(len(v) - 1) // 2])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scores", help="npz written by train/calibrate.py --scores")
    p.add_argument("--model", help="apply this model's calibration to the raw scores (default: none)")
    p.add_argument("--draws", type=int, default=200)
    args = p.parse_args(argv)
    data = np.load(args.scores)
    patches, truth = data["patches"].astype(np.float64), data["truth"]
    if args.model:
        net = hub.load_pretrained(args.model)
        if net.calibration is not None:
            with torch.no_grad():
                patches = net.calibration(torch.from_numpy(patches)).numpy()  # NaN stays NaN
    patches = np.clip(patches, 0, 1)
    rows = [row[np.isfinite(row)] for row in patches]
    ok = np.array([len(r) > 0 for r in rows])
    med = np.array([lower_median(r) if len(r) else np.nan for r in rows])
    iqr = np.array([np.subtract(*np.percentile(r, [75, 25])) if len(r) else np.nan for r in rows])
    err = np.abs(med - truth)
    sel = ok & (truth >= 1 / 8)
    print(f"{sel.sum()} images with true factor in [1/8, 1]; median |error| {np.median(err[sel]):.3f}, "
          f"within +-0.1 {np.mean(err[sel] <= 0.1):.1%}")
    print("\n| patch IQR | images | median abs. error | 90th pct. error | within +-0.1 |")
    print("|---|---|---|---|---|")
    edges = [0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 1.01]
    for lo, hi in zip(edges, edges[1:]):
        m = sel & (iqr >= lo) & (iqr < hi)
        if m.sum():
            print(f"| {lo:.2f}-{min(hi, 1):.2f} | {m.sum()} | {np.median(err[m]):.3f} | "
                  f"{np.percentile(err[m], 90):.3f} | {np.mean(err[m] <= 0.1):.0%} |")
    rng = np.random.default_rng(0)
    full = [r for r, s in zip(rows, sel) if s and len(r) >= 16]
    print(f"\n| patches k | 90th pct. of abs(median of k - median of all), {len(full)} images with >= 16 patches |")
    print("|---|---|")
    for k in (1, 2, 3, 4, 6, 8, 12):
        dev = [abs(lower_median(rng.choice(r, k, replace=False)) - lower_median(r)) for r in full
               for _ in range(max(1, args.draws // 10))]
        print(f"| {k} | {np.percentile(dev, 90):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
