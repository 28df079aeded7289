"""Sharpen and soften the validation faces with the enhancer; report the score changes and save a
before/after picture for the docs.

    python benchmarks/enhance_demo.py                                # bundled default model
    python benchmarks/enhance_demo.py --model owner/repo --max-side 1024
    python benchmarks/enhance_demo.py --tiny --max-side 256          # tiny random net: plumbing only

Writes ``docs/images/enhance_before_after.png`` (soften | original | sharpen | 8x amplified change
of sharpen, cropped to the first face) and prints a Markdown table of the effective resolution
ratio before and after each direction (the scorer's usual median of clipped patch scores over the
face mask) and the optimised mean raw patch score.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_FACES = [ROOT.parent / "shared" / "data" / "faces" / "val", Path("/work/shared/data/faces/val")]


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    return np.asarray(Image.fromarray(rgb).resize((round(w * s), round(h * s)), Image.LANCZOS))


def _panel(images: list[np.ndarray], mask: np.ndarray | None, path: Path) -> None:
    """Crop all images to the mask's bounding box (plus a margin) and put them side by side."""
    from PIL import Image

    h, w = images[0].shape[:2]
    y0, y1, x0, x1 = 0, h, 0, w
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        my, mx = (ys.max() - ys.min()) // 8, (xs.max() - xs.min()) // 8
        y0, y1 = max(0, ys.min() - my), min(h, ys.max() + my + 1)
        x0, x1 = max(0, xs.min() - mx), min(w, xs.max() + mx + 1)
    crops = [im[y0:y1, x0:x1] for im in images]
    gap = np.full((crops[0].shape[0], 8, 3), 255, dtype=np.uint8)
    row = np.concatenate([c for im in crops for c in (im, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="effres model id/folder (default: bundled)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random net (patch 32) instead of a model")
    parser.add_argument("--faces", default=None, help="folder of face images (default: shared val faces)")
    parser.add_argument("--max-side", type=int, default=768, help="shrink images to this longer side first")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-size", type=float, default=100.0)
    parser.add_argument("--detector", default="auto")
    parser.add_argument("--masker", default="auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N faces")
    parser.add_argument("--picture", default=str(ROOT / "docs" / "images" / "enhance_before_after.png"))
    parser.add_argument("--json", default=None, help="write the per-image numbers here")
    args = parser.parse_args(argv)

    import torch

    from effres_core.gradient.enhance import enhance
    from effres_core.model.hub import load_pretrained
    from effres_core.measure.imageio import load_image
    from effres_core.model.net import EffResNet
    from effres_core.measure.scorer import EffRes

    if args.tiny:
        torch.manual_seed(0)
        net = EffResNet(patch_size=32, width=0.25).eval()
    else:
        net = load_pretrained(args.model)
    model = EffRes(net, detector=args.detector, masker=args.masker, device=args.device)
    folder = Path(args.faces) if args.faces else next((p for p in DEFAULT_FACES if p.is_dir()), None)
    if folder is None:
        parser.error("no face folder found; pass --faces")
    files = sorted(glob.glob(str(folder / "*.jpg")) + glob.glob(str(folder / "*.png")))[:args.limit]
    rows, picture_done = [], False
    print("| image | ratio before | sharpen | soften | mean patch score before | sharpen | soften | s |")
    print("|---|---|---|---|---|---|---|---|")
    for f in files:
        rgb = _shrink(load_image(f), args.max_side)
        mask = model.face_masks(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255)
        start = time.perf_counter()
        up = enhance(model, rgb, "sharpen", steps=args.steps, step_size=args.step_size, mask=mask)
        down = enhance(model, rgb, "soften", steps=args.steps, step_size=args.step_size, mask=mask)
        seconds = time.perf_counter() - start
        row = {"image": Path(f).name, "size": list(rgb.shape[:2]), "ratio_before": float(up.before[0]),
               "ratio_sharpen": float(up.after[0]), "ratio_soften": float(down.after[0]),
               "raw_before": float(up.raw_before[0]), "raw_sharpen": float(up.raw_after[0]),
               "raw_soften": float(down.raw_after[0]), "seconds": seconds,
               "max_abs_change_sharpen": int(np.abs(up.images.astype(int) - rgb).max())}
        rows.append(row)
        cells = [row[k] for k in ("ratio_before", "ratio_sharpen", "ratio_soften", "raw_before", "raw_sharpen",
                                  "raw_soften")]
        print(f"| {row['image']} | " + " | ".join("n/a" if math.isnan(c) else f"{c:.3f}" for c in cells)
              + f" | {seconds:.0f} |", flush=True)
        if not picture_done and not math.isnan(row["raw_before"]):
            diff = np.clip(128 + 8 * (up.images.astype(int) - rgb.astype(int)), 0, 255).astype(np.uint8)
            _panel([down.images, rgb, up.images, diff], mask[0].numpy() > 0.5, Path(args.picture))
            picture_done = True
    ok = [r for r in rows if not math.isnan(r["raw_before"])]
    if ok:
        mean = lambda k: float(np.nanmean([r[k] for r in ok]))  # noqa: E731
        print(f"\nmean over {len(ok)} faces: ratio {mean('ratio_before'):.3f} -> sharpen {mean('ratio_sharpen'):.3f}"
              f" / soften {mean('ratio_soften'):.3f}; mean patch score {mean('raw_before'):.3f} -> "
              f"{mean('raw_sharpen'):.3f} / {mean('raw_soften'):.3f}")
        print(f"picture: {args.picture}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
