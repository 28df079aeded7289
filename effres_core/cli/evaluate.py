"""``effres evaluate``: SRCC/PRA of a model (and the classical baselines) on generated sets with
known truth, built from a folder of sharp faces, and/or on folders ranked by a labels CSV."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


#: Runs expected to take longer than this get a hint on how to make them shorter.
QUICK_SECONDS = 600


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="rank-correlation benchmark of a model and baselines",
        description="Build mixed folders, ladders and unseen degradation families from sharp face photos "
                    "and report per-folder SRCC/PRA, pooled SRCC and the error against the true factor.")
    p.add_argument("sharp_dir", nargs="?", help="folder of sharp face photos (searched recursively)")
    p.add_argument("--model", default=None, help="model id, folder or .safetensors (default: the bundled model)")
    p.add_argument("--labels", help="CSV with path,label (or folder,path,label) columns; higher label = sharper")
    p.add_argument("--baselines", action="store_true", help="also score the three classical baselines")
    p.add_argument("--no-model", action="store_true", help="score only the baselines")
    p.add_argument("--max-faces", type=int, default=None, help="use at most this many sharp faces")
    p.add_argument("--max-side", type=int, default=512, help="longest side of the face crops (default 512)")
    p.add_argument("--min-side", type=int, default=160, help="skip face crops smaller than this (default 160)")
    p.add_argument("--n-patches", type=int, default=100, help="patches per image for the model (default 100)")
    p.add_argument("--detector", default="haar", help="face detector for cropping: haar|retinaface|auto|centre")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device for the model (default: CPU)")
    p.add_argument("--json", dest="json_out", help="write the full reports as JSON here")
    p.add_argument("--markdown", dest="markdown_out", help="write the tables as Markdown here")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no time estimate")
    p.add_argument("--estimate-only", action="store_true",
                   help="print how many images the run scores and about how long it takes here, then stop")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..evaluation.estimate import estimate_run
    from ..evaluation.evalsets import SuiteSpec, load_sharp_faces
    from ..evaluation import baseline_scorers, evaluate_labels, evaluate_many, format_markdown, jsonable, model_scorer

    if not args.sharp_dir and not args.labels:
        print("effres evaluate: give a folder of sharp faces, --labels CSV, or both", file=sys.stderr)
        return 2
    if args.no_model and not args.baselines:
        print("effres evaluate: --no-model needs --baselines", file=sys.stderr)
        return 2
    scorers = {}
    if not args.no_model:
        try:
            scorers["effres"] = model_scorer(args.model, n_patches=args.n_patches, device=args.device)
        except (OSError, ValueError) as err:
            print(f"effres evaluate: cannot load model: {err}", file=sys.stderr)
            return 1
    if args.baselines:
        scorers.update(baseline_scorers())
    progress = not args.quiet
    try:
        if args.sharp_dir:
            spec = SuiteSpec(seed=args.seed)
            faces = load_sharp_faces(args.sharp_dir, max_side=args.max_side, min_side=args.min_side,
                                     max_faces=args.max_faces, detector=args.detector)
            if args.estimate_only or not args.quiet:
                estimate = estimate_run(scorers, faces, spec)
                print(f"effres evaluate: {estimate.describe()}", file=sys.stderr)
                if estimate.seconds > QUICK_SECONDS:
                    print("effres evaluate: fewer faces (--max-faces), patches (--n-patches) or smaller crops "
                          "(--max-side) make it quicker; --estimate-only prints this and stops", file=sys.stderr)
                if args.estimate_only:
                    return 0
            reports = evaluate_many(scorers, args.sharp_dir, spec=spec, faces=faces, max_side=args.max_side,
                                    progress=progress)
        else:
            reports = {name: {"scorer": name} for name in scorers}
        if args.labels:
            for name, stats in evaluate_labels(scorers, args.labels, detector=args.detector,
                                               progress=progress).items():
                reports[name]["labels"] = stats
    except (OSError, ValueError) as err:
        print(f"effres evaluate: {err}", file=sys.stderr)
        return 1
    markdown = format_markdown(reports)
    print(markdown)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(jsonable(reports), indent=1) + "\n")
    if args.markdown_out:
        Path(args.markdown_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown_out).write_text(markdown)
    return 0
