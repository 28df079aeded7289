"""Do small faces get a ratio, and does it mean the same as a large face's? Small-face ladders.

    python benchmarks/bench_small_faces.py                  # 7 faces x 6 sizes x 5 factors, end to end
    python benchmarks/bench_small_faces.py --sizes 48 64 --faces 3

Each sharp face (the validation portraits and selfies, and the sharp examples: identities the
scorer never trained on) is cut out with its hair, resized (antialiased) so its face box side is
``s`` px (48-200, and 400 as the large-face reference), then degraded by a known factor ``f``
(downscaled by ``f`` and scaled back with bicubic, so it holds the detail of an ``f``-times
smaller face) and pasted on a grey canvas. ``EffRes.score`` (MTCNN, ellipse mask, bundled model)
scores it end to end, as a user's image.

Printed per size: faces found, faces scored, the mean ratio per factor, and the ladder SRCC
(ratio vs factor, per face, then averaged); then the pooled SRCC over all sizes and factors and
the mean absolute error against ``f``, for the ratio as effres reports it (upscaled to
``face_size`` and converted back, ``min(1, k * score)``) and, for comparison, the raw score of
the upscaled crop (what the model sees, before the conversion). Targets (issue 11): ladder SRCC
>= 0.9, 100% of found faces >= 48 px scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import detection_set as ds  # noqa: E402
from effres_core.measure.faces import FaceBox, expand_box  # noqa: E402
from effres_core.measure.scorer import EffRes  # noqa: E402

SIZES = (48, 64, 96, 144, 200, 400)
FACTORS = (1.0, 0.7, 0.5, 0.35, 0.25)


def ladder_faces() -> list[str]:
    boxes = json.loads(ds.BOXES.read_text())
    return [k for k in boxes if ("/val/" in k and any(w in k for w in ("portrait", "selfie", "pyfeat")))
            or k.endswith("_sharp.jpg")]


def placed(key: str, side: int, factor: float) -> tuple[np.ndarray, list[float]]:
    """The face of ``key`` at ``side`` px, degraded by ``factor``, on a grey canvas; and its box."""
    rgb = np.asarray(Image.open(ds._path(key)).convert("RGB"))
    x0, y0, x1, y1 = json.loads(ds.BOXES.read_text())[key]
    crop = expand_box(FaceBox(x0, y0, x1, y1), *rgb.shape[:2], 0.5)
    k = side / max(x1 - x0, y1 - y0)
    face = Image.fromarray(rgb[crop.y0:crop.y1, crop.x0:crop.x1])
    face = face.resize((max(1, round(face.width * k)), max(1, round(face.height * k))), Image.LANCZOS)
    face = ds.degrade(face, factor)
    W, H = max(320, int(face.width * 1.6)), max(320, int(face.height * 1.6))
    canvas = Image.new("RGB", (W, H), (128, 128, 128))
    ox, oy = (W - face.width) // 2, (H - face.height) // 2
    canvas.paste(face, (ox, oy))
    box = [ox + (x0 - crop.x0) * k, oy + (y0 - crop.y0) * k, ox + (x1 - crop.x0) * k, oy + (y1 - crop.y0) * k]
    return np.asarray(canvas), box


def srcc(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--factors", type=float, nargs="+", default=list(FACTORS))
    ap.add_argument("--faces", type=int, default=None, help="use only the first N faces")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if not ds.available():
        print("needs ../shared/data/faces and examples/faces")
        return 1
    torch.set_num_threads(args.threads)
    model = EffRes.from_pretrained(device="cpu", detector="mtcnn", masker="ellipse")
    keys = ladder_faces()[:args.faces]
    t0 = time.perf_counter()
    rows = []  # (key, side, factor, reported ratio or None, raw upscaled score or None, found)
    for key in keys:
        for side in args.sizes:
            for factor in args.factors:
                rgb, box = placed(key, side, factor)
                result = model.score(rgb)
                face = next((f for f in result.faces if ds.iou(f.box, box) >= 0.4), None)
                ratio = face.ratio if face else None
                raw = ratio / face.upscale if ratio is not None else None  # capped ratios: 1/k, a lower bound
                found = max(face.box[2] - face.box[0], face.box[3] - face.box[1]) if face else 0
                rows.append((key, side, factor, ratio, raw, found))
    print(f"small-face ladders: {len(keys)} faces x {len(args.sizes)} sizes x {len(args.factors)} factors, "
          f"face_size {model.face_size}, floor {model.min_face_size} px, {time.perf_counter() - t0:.0f} s\n")
    print("| face side placed (px) | detected side (median) | upscale k | found | scored / found >= floor | "
          "mean ratio at f = " + " / ".join(f"{f:g}" for f in args.factors) + " | ladder SRCC |")
    print("|---|---|---|---|---|---|---|")
    for side in args.sizes:
        mine = [r for r in rows if r[1] == side]
        found = sum(r[5] > 0 for r in mine)
        big = [r for r in mine if r[5] >= model.min_face_size]
        scored = sum(r[3] is not None for r in big)
        means = [np.mean([r[3] for r in mine if r[2] == f and r[3] is not None]) if any(
            r[2] == f and r[3] is not None for r in mine) else float("nan") for f in args.factors]
        ladders = []
        for key in keys:
            lad = [(r[2], r[3]) for r in mine if r[0] == key and r[3] is not None]
            if len(lad) == len(args.factors):
                ladders.append(srcc(*zip(*lad)))
        k = max(1.0, model.face_size / side)
        detected = np.median([r[5] for r in mine if r[5]] or [0])
        ladder = f"{np.mean(ladders):.3f} ({len(ladders)} ladders)" if ladders else "- (no complete ladder)"
        print(f"| {side} | {detected:.0f} | {k:.2f} | {found}/{len(mine)} | {scored}/{len(big)} | "
              + " / ".join(f"{m:.3f}" for m in means) + f" | {ladder} |")
    good = [r for r in rows if r[3] is not None]
    f, y = [r[2] for r in good], [r[3] for r in good]
    print(f"\npooled over sizes {min(args.sizes)}-{max(args.sizes)} px: SRCC {srcc(f, y):.3f}, "
          f"mean |ratio - f| {np.mean(np.abs(np.array(y) - np.array(f))):.3f} ({len(good)} faces scored of "
          f"{sum(r[5] > 0 for r in rows)} found, {len(rows)} placed)")
    print(f"without the conversion (the raw score of the upscaled crop, ratio / k): pooled SRCC "
          f"{srcc(f, [r[4] for r in good]):.3f}, mean |raw - f| {np.mean(np.abs(np.array([r[4] for r in good]) - np.array(f))):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
