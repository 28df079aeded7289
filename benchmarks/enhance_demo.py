"""Is the enhancer honest? Sharpen 2x and 4x upscales of the validation faces, save the results as
PNG, score the saved files as `effres score` does, and compare that gain with the gain of the
enhancer's own objective; save a labelled before/after picture for the docs.

    python benchmarks/enhance_demo.py                          # bundled model, shared val faces
    python benchmarks/enhance_demo.py --limit 3 --factors 4    # a quick look
    python benchmarks/enhance_demo.py --variant fixed-grid     # the ascent on one fixed grid, unfiltered
    python benchmarks/enhance_demo.py --tiny --max-side 256    # tiny random net: plumbing only

Test images: per validation face, a square around the largest Haar face (3.2 face widths, at most
``--max-side`` px), shrunk by 2 and by 4 with Lanczos and brought back with bicubic (true ratios
0.5 and 0.25). Columns: ``score`` is ``EffRes.score`` of the image file before and of the saved
output after; ``objective`` is the enhancer's own mean soft-clipped patch score (unshifted grid);
``agreement`` = score gain / objective gain (the target is at least 0.6); ``other grids`` scores
the saved output with 70 and 140 patches per face instead of 100 (a grid the ascent never saw).

Writes ``docs/images/enhance_before_after.png`` (before | sharpened | softened | change of
sharpening, 8x amplified, cropped to the first face, labelled).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_FACES = [ROOT.parent / "shared" / "data" / "faces" / "val", Path("/work/shared/data/faces/val")]
VARIANTS = {
    "default": {},
    # what the enhancer did before it shifted its grid and filtered its steps (on the face crops)
    "fixed-grid": {"jitter": False, "smooth": 0.0, "highpass": None, "colour": True},
}


def upscaled_faces(files: list[str], factors: list[int], max_side: int, out: Path) -> list[tuple[str, int, Path]]:
    """Write the ``factor``x upscales of a square around each file's face; ``(name, factor, path)``."""
    from PIL import Image

    from effres_core.measure.faces import detect_haar
    from effres_core.measure.imageio import load_image

    made = []
    for f in files:
        rgb = load_image(f)
        h, w = rgb.shape[:2]
        boxes = detect_haar(rgb)
        if not boxes:
            print(f"{Path(f).name}: no face found, skipped", file=sys.stderr)
            continue
        b = boxes[0]
        side = min(h, w, max(int(3.2 * max(b.width, b.height)), 256))
        cx, cy = (b.x0 + b.x1) // 2, (b.y0 + b.y1) // 2
        x0 = min(max(0, cx - side // 2), w - side)
        y0 = min(max(0, cy - side // 2 - side // 16), h - side)
        size = min(side, max_side) // 4 * 4
        crop = Image.fromarray(rgb[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.LANCZOS)
        for k in factors:
            path = out / f"{Path(f).stem}_{k}x.png"
            crop.resize((size // k, size // k), Image.LANCZOS).resize((size, size), Image.BICUBIC).save(path)
            made.append((Path(f).stem, k, path))
    return made


def _label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    bar = max(18, img.shape[1] // 14)
    canvas = Image.new("RGB", (img.shape[1], img.shape[0] + bar), (255, 255, 255))
    canvas.paste(Image.fromarray(img), (0, bar))
    try:
        font = ImageFont.load_default(size=int(bar * 0.7))
    except TypeError:  # Pillow < 10.1: one fixed size
        font = ImageFont.load_default()
    ImageDraw.Draw(canvas).text((6, bar * 0.12), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def picture(before: np.ndarray, sharp: np.ndarray, soft: np.ndarray, mask: np.ndarray, labels: list[str],
            path: Path) -> None:
    """The four panels side by side, cropped to the mask's bounding box (plus a margin), labelled."""
    from PIL import Image

    diff = np.clip(128 + 8 * (sharp.astype(int) - before.astype(int)), 0, 255).astype(np.uint8)
    h, w = before.shape[:2]
    y0, y1, x0, x1 = 0, h, 0, w
    if mask.any():
        ys, xs = np.nonzero(mask)
        my, mx = (ys.max() - ys.min()) // 10, (xs.max() - xs.min()) // 10
        y0, y1 = max(0, ys.min() - my), min(h, ys.max() + my + 1)
        x0, x1 = max(0, xs.min() - mx), min(w, xs.max() + mx + 1)
    panels = [_label(im[y0:y1, x0:x1], text) for im, text in zip((before, sharp, soft, diff), labels)]
    gap = np.full((panels[0].shape[0], 8, 3), 255, dtype=np.uint8)
    row = np.concatenate([c for im in panels for c in (im, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="effres model id/folder (default: bundled)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random net (patch 32) instead of a model")
    parser.add_argument("--faces", default=None, help="folder of sharp face images (default: shared val faces)")
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--max-side", type=int, default=768, help="side of the square test images")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-size", type=float, default=100.0)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N faces")
    parser.add_argument("--picture", default=str(ROOT / "docs" / "images" / "enhance_before_after.png"),
                        help="where the before/after picture goes ('' for none)")
    parser.add_argument("--out", default=None, help="keep the test images and outputs here (default: a temp folder)")
    parser.add_argument("--json", default=None, help="write the per-image numbers here")
    args = parser.parse_args(argv)

    import torch

    from effres_core.gradient.enhance import enhance
    from effres_core.measure.imageio import load_image
    from effres_core.measure.scorer import EffRes
    from effres_core.model.hub import load_pretrained
    from effres_core.model.net import EffResNet

    torch.set_num_threads(args.threads)
    if args.tiny:
        torch.manual_seed(0)
        net = EffResNet(patch_size=32, width=0.25).eval()
    else:
        net = load_pretrained(args.model)
    model = EffRes(net, device=args.device)
    others = [EffRes(net, device=args.device, n_patches=n) for n in (70, 140)]
    folder = Path(args.faces) if args.faces else next((p for p in DEFAULT_FACES if p.is_dir()), None)
    if folder is None:
        parser.error("no face folder found; pass --faces")
    files = sorted(glob.glob(str(folder / "*.jpg")) + glob.glob(str(folder / "*.png")))[:args.limit]
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="effres_enhance_"))
    work.mkdir(parents=True, exist_ok=True)
    settings = {"steps": args.steps, "step_size": args.step_size, **VARIANTS[args.variant]}
    print(f"variant {args.variant}: {settings}; images in {work}")
    print("| image | factor | score before | score after (saved PNG) | objective before | after | agreement "
          "| other grids (70 / 140 patches) | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows, picture_done = [], not args.picture
    from PIL import Image

    for name, factor, path in upscaled_faces(files, args.factors, args.max_side, work):
        rgb = load_image(path)
        start = time.perf_counter()
        up = enhance(model, rgb, "sharpen", **settings)
        seconds = time.perf_counter() - start
        saved = work / f"{path.stem}_sharpened_{args.variant}.png"
        Image.fromarray(up.images).save(saved)
        s0, s1 = model.score(path).ratio, model.score(saved).ratio
        o0, o1 = float(up.raw_before[0]), float(up.raw_after[0])
        other = [m.score(saved).ratio for m in others]
        ok = None not in (s0, s1) and not math.isnan(o0) and o1 != o0
        row = {"image": name, "factor": factor, "score_before": s0, "score_after": s1, "objective_before": o0,
               "objective_after": o1, "agreement": (s1 - s0) / (o1 - o0) if ok else None,
               "reported_after": float(up.after[0]), "other_grids": other, "seconds": seconds,
               "max_abs_change": int(np.abs(up.images.astype(int) - rgb).max())}
        rows.append(row)
        fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
        print(f"| {name} | {factor}x | {fmt(s0)} | {fmt(s1)} | {fmt(o0)} | {fmt(o1)} | {fmt(row['agreement'])} "
              f"| {fmt(other[0])} / {fmt(other[1])} | {seconds:.0f} |", flush=True)
        if not picture_done and ok:
            down = enhance(model, rgb, "soften", **settings)
            labels = [f"before {s0:.2f}", f"sharpened {s1:.2f}", f"softened {model.score(down.images).ratio:.2f}",
                      "change x8"]
            picture(rgb, up.images, down.images, up.mask[0].numpy() > 0.5, labels, Path(args.picture))
            picture_done = True
    ok = [r for r in rows if r["agreement"] is not None]
    if ok:
        gain_s = float(np.mean([r["score_after"] - r["score_before"] for r in ok]))
        gain_o = float(np.mean([r["objective_after"] - r["objective_before"] for r in ok]))
        print(f"\n{len(ok)} of {len(rows)} images enhanced: mean score gain {gain_s:.3f}, mean objective gain "
              f"{gain_o:.3f}, ratio of means {gain_s / gain_o:.2f}; per image agreement min "
              f"{min(r['agreement'] for r in ok):.2f}, median {float(np.median([r['agreement'] for r in ok])):.2f}")
        other_gap = float(np.mean([abs(g - r["score_after"]) for r in ok for g in r["other_grids"] if g is not None]))
        print(f"mean |score with 70 or 140 patches - score with 100| of the outputs: {other_gap:.3f}")
        if args.picture:
            print(f"picture: {args.picture}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
