"""``effres score``: the effective resolution of every face image in files and folders.

One line per image by default, ``--json`` for a JSON list, ``--csv FILE`` for a table, and
``--heatmap DIR`` for pictures of the patch scores. Unreadable files become error entries and the
run goes on; the exit status is 1 when any file failed, 2 when the model cannot be loaded.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..measure.faces import DETECTORS
from ..measure.masks import MASKERS
from ..measure.reliability import score_warning
from ._model import load_effres

CSV_COLUMNS = ("path", "ratio", "effective_height", "effective_width", "height", "width", "faces",
               "patches", "patch_iqr", "warning", "detector", "masker", "reason", "error")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "score", help="score the effective resolution of face images",
        description="Estimate how sharp the faces in images really are: the effective resolution ratio y "
                    "in [0, 1] (1 = as sharp as the pixel grid allows) and the effective resolution "
                    "y*H x y*W in pixels. Folders are searched recursively.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument("--model", default=None, metavar="ID_OR_PATH",
                   help="model folder, .safetensors file or Hub repo id (default: the bundled model)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of --model")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list with one entry per image")
    out.add_argument("--csv", metavar="FILE", help="write a CSV table to FILE ('-' for standard output)")
    p.add_argument("--heatmap", metavar="DIR", help="write <stem>_heatmap.png with the patch scores per image")
    p.add_argument("--patches", type=int, default=100, metavar="N", help="about N patches per face (default 100)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: CUDA if available)")
    p.add_argument("--detector", choices=DETECTORS, default="auto",
                   help="face detector; auto = RetinaFace if its weights are on disk, else the bundled MTCNN; "
                        "whole = image is one face")
    p.add_argument("--masker", choices=MASKERS, default="auto",
                   help="foreground mask; auto = BiSeNet if available, else an ellipse over the face")
    p.add_argument("--bf16", action="store_true",
                   help="run the network in bfloat16 autocast: ~25%% faster end to end on CPUs with "
                        "AVX512-BF16/AMX and on GPUs; ratios move by a few thousandths")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="patches per forward pass, pooled across images (default 16 on CPU, 256 on GPU)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="threads that read, detect and score images (default: the usable cores on CPU, up to "
                        "8 with a GPU; 0 = one image at a time in the main thread)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no model line on stderr "
                   "(errors and the failure count still go there)")
    p.set_defaults(run=run)
    return p


def _load_model(args):
    """The scorer, or ``None`` after printing why it cannot be loaded."""
    if args.patches < 1:
        print(f"effres score: --patches must be at least 1, got {args.patches}", file=sys.stderr)
        return None
    if (args.batch_size is not None and args.batch_size < 1) or (args.workers is not None and args.workers < 0):
        print("effres score: --batch-size must be at least 1 and --workers at least 0", file=sys.stderr)
        return None
    model = load_effres("score", args.model, revision=args.revision, device=args.device,
                        detector=args.detector, masker=args.masker, n_patches=args.patches)
    if model is None:
        return None
    if not args.quiet:
        print(f"effres: model {args.model or 'default'} ({model.net.backbone}, {model.patch_size}px patches) on "
              f"{model.device}, detector {model.detector_resolved}, masker {model.masker_resolved}", file=sys.stderr)
    return model


def _heatmap_path(folder: Path, path: Path, used: set[str]) -> Path:
    """``<stem>_heatmap.png``; a stem seen before in this run (same name, other folder) gets a number."""
    name, n = f"{path.stem}_heatmap.png", 1
    while name in used:
        n += 1
        name = f"{path.stem}_{n}_heatmap.png"
    used.add(name)
    return folder / name


def _save_heatmap(result, rgb, heatmap_dir: Path, used: set[str]):
    """The heatmap file written for a scored image, or ``None``; a write error goes into ``result.error``."""
    from ..measure.heatmap import save_heatmap

    try:
        return save_heatmap(result, rgb, _heatmap_path(heatmap_dir, Path(result.path), used))
    except OSError as err:
        result.error = f"cannot write heatmap: {err}"
        return None


def format_line(result) -> str:
    """One human-readable line for a result."""
    if result.error:
        return f"{result.path}: error: {result.error}"
    if result.ratio is None:
        return f"{result.path}: not scored: {result.reason}"
    (eh, ew), (h, w) = result.effective_resolution, result.image_size
    n = len(result.faces)
    patches, iqr = _patch_summary(result)
    line = (f"{result.path}: ratio {result.ratio:.3f}, effective resolution {eh}x{ew} of {h}x{w}, "
            f"{n} face{'s' if n != 1 else ''}, {patches} patches, patch IQR {iqr:.3f}")
    warning = score_warning(result)
    return f"{line} (unreliable: {warning})" if warning else line


def _patch_summary(result) -> tuple[int, float | None]:
    """Patches behind the image's ratio (all faces) and the widest patch spread of its scored faces."""
    scored = [f for f in result.faces if f.ratio is not None]
    iqrs = [f.patch_iqr for f in scored if f.patch_iqr is not None]
    return sum(f.patches_used for f in scored), (max(iqrs) if iqrs else None)


def _csv_row(result) -> dict:
    patches, iqr = _patch_summary(result)
    eff = result.effective_resolution or (None, None)
    size = result.image_size or (None, None)
    return {"path": result.path, "ratio": "" if result.ratio is None else f"{result.ratio:.6f}",
            "effective_height": eff[0], "effective_width": eff[1], "height": size[0], "width": size[1],
            "faces": len(result.faces), "patches": patches, "patch_iqr": "" if iqr is None else f"{iqr:.6f}",
            "warning": score_warning(result) or "", "detector": result.detector, "masker": result.masker,
            "reason": result.reason, "error": result.error}


def run(args) -> int:
    from tqdm import tqdm

    from ..measure.batch import BatchScorer
    from ..measure.imageio import find_images

    paths = find_images(args.paths)
    if not paths:
        print("effres score: no images found in " + ", ".join(args.paths), file=sys.stderr)
        return 1
    model = _load_model(args)
    if model is None:
        return 2
    heatmap_dir = Path(args.heatmap) if args.heatmap else None
    csv_to_stdout = args.csv == "-"
    used: set[str] = set()
    entries, rows, failed = [], [], 0
    scorer = BatchScorer(model, batch_size=args.batch_size, workers=args.workers,
                         precision="bf16" if args.bf16 else "fp32", keep_maps=heatmap_dir is not None)
    bar = tqdm(total=len(paths), unit="img", file=sys.stderr, disable=args.quiet or len(paths) < 2,
               dynamic_ncols=True)
    for item in scorer.score_paths(paths, keep_rgb=heatmap_dir is not None):  # input order
        result, written = item.result, None
        if heatmap_dir is not None and item.rgb is not None and result.error is None:
            written = _save_heatmap(result, item.rgb, heatmap_dir, used)
        failed += result.error is not None
        entry = result.to_dict()
        if written is not None:
            entry["heatmap"] = str(written)
        entries.append(entry)
        rows.append(_csv_row(result))
        if not args.json and not csv_to_stdout:
            tqdm.write(format_line(result), file=sys.stdout)
        bar.update(1)
    bar.close()
    if args.json:
        print(json.dumps(entries, indent=2))
    if args.csv:
        handle = sys.stdout if csv_to_stdout else open(args.csv, "w", newline="")
        try:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        finally:
            if not csv_to_stdout:
                handle.close()
    if failed:
        print(f"effres score: {failed} of {len(paths)} image{'s' if len(paths) != 1 else ''} failed",
              file=sys.stderr)
    return 1 if failed else 0
