"""``effres enhance IN OUT``: sharpen (or soften) the faces of one image along the scorer's gradient."""

from __future__ import annotations

import argparse
import math
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "enhance", help="sharpen or soften faces by gradient ascent on the predicted effective resolution",
        description="L2 PGD on the image to raise (or, with --soften, lower) the predicted effective "
                    "resolution of its faces. Only the face mask changes unless --no-mask is given. "
                    "Save as PNG to keep the added detail.")
    parser.add_argument("input", metavar="IN", help="image file to enhance")
    parser.add_argument("output", metavar="OUT", help="where to write the result (PNG recommended)")
    parser.add_argument("--soften", action="store_true", help="lower the predicted ratio instead (realistic blur)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument("--step-size", type=float, default=100.0,
                        help="L2 length of each step per patch area, in 0-255 pixel units (default 100)")
    parser.add_argument("--max-change", type=float, default=None,
                        help="bound on the change of any pixel, in 0-255 units (default: none)")
    parser.add_argument("--model", default=None, help="model folder, .safetensors file or Hub id (default: bundled)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    parser.add_argument("--no-mask", action="store_true", help="change the whole image, not just the faces")
    parser.add_argument("--smooth", type=float, default=1.0, metavar="PX",
                        help="blur each step with a Gaussian of this sigma: no pixel-level ripple (default 1; 0 = off)")
    parser.add_argument("--highpass", type=float, default=8.0, metavar="PX",
                        help="drop changes broader than this sigma: detail, no shading or tone shift "
                             "(default 8; 0 = off)")
    parser.add_argument("--colour", action="store_true", help="let colour change too (default: brightness detail only)")
    parser.add_argument("--no-jitter", action="store_true",
                        help="ascend on the scorer's own patch grid instead of a randomly shifted one per step "
                             "(gains that partly fit that one grid)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the grid offsets (default 0)")
    parser.set_defaults(run=run)
    return parser


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def run(args: argparse.Namespace) -> int:
    from ..gradient.enhance import enhance_file
    from ..measure.imageio import ImageLoadError
    from ._model import load_effres

    model = load_effres("enhance", args.model, device=args.device)
    if model is None:
        return 2
    try:
        result = enhance_file(args.input, args.output, model, direction="soften" if args.soften else "sharpen",
                              steps=args.steps, step_size=args.step_size, max_change=args.max_change,
                              mask=False if args.no_mask else None, smooth=args.smooth,
                              highpass=args.highpass or None, colour=args.colour, jitter=not args.no_jitter,
                              seed=args.seed)
    except (ImageLoadError, ValueError) as err:
        print(f"effres enhance: {err}", file=sys.stderr)
        return 2
    before, after = float(result.before[0]), float(result.after[0])
    raw_before, raw_after = float(result.raw_before[0]), float(result.raw_after[0])
    if math.isnan(raw_before):
        print(f"{args.input}: no face region large enough to score; wrote the image unchanged to {args.output}")
        return 1
    print(f"{args.input}: ratio {_fmt(before)} -> {_fmt(after)} (effres score of {args.output}; optimised "
          f"mean patch score {_fmt(raw_before)} -> {_fmt(raw_after)})")
    return 0
