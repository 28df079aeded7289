"""``effres curate``: score a dataset and keep, copy, move or link files by effective resolution.

Parsing and printing only; the work is in :mod:`effres_core.curate` (and, with ``--engine ray``,
:mod:`effres_core.integrations.ray`). Exit status: 0, 1 when a file failed or an action clashed
or failed, 2 for bad arguments or a model that cannot load, 130 when interrupted (the manifest
then holds every finished score: run again with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys

from ..measure.faces import DETECTORS
from ..measure.masks import MASKERS

FACE_RULES = ("largest", "all", "any", "image")  # effres_core.curate.rules.FACE_RULES, without importing it


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "curate", help="score a dataset and copy, move or link its sharp (or soft) images",
        description="Score every image (files, folders searched recursively, glob patterns, --from-list "
                    "files), decide which to keep by effective resolution, act on the decision keeping the "
                    "relative folder structure, and write a manifest with one row per file. Never deletes "
                    "or overwrites a file.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or glob patterns ('**' recurses)")
    p.add_argument("--from-list", action="append", default=[], metavar="FILE",
                   help="a text file with one path per line, or a CSV with a 'path' column (repeatable)")
    rules = p.add_argument_group("rules")
    rules.add_argument("--min-ratio", type=float, default=None, metavar="Y",
                       help="keep images whose ratio is at least Y (0-1; 0.5 = looks like a 2x upscale)")
    rules.add_argument("--min-effective-pixels", type=int, default=0, metavar="N",
                       help="also require round(ratio x image height) >= N pixels")
    rules.add_argument("--top-n", type=int, default=0, metavar="N", help="keep at most the N sharpest passing images")
    rules.add_argument("--faces", choices=FACE_RULES, default="largest",
                       help="which faces the rules judge in multi-face images: the largest (default: the main "
                            "subject decides), all must pass, any may pass, or the image's overall ratio")
    acts = p.add_argument_group("actions (kept files; --rejected-* for the others)")
    kept = acts.add_mutually_exclusive_group()
    kept.add_argument("--copy-to", metavar="DIR")
    kept.add_argument("--move-to", metavar="DIR")
    kept.add_argument("--link-to", metavar="DIR")
    rejected = acts.add_mutually_exclusive_group()
    rejected.add_argument("--rejected-copy-to", metavar="DIR")
    rejected.add_argument("--rejected-move-to", metavar="DIR")
    rejected.add_argument("--rejected-link-to", metavar="DIR")
    acts.add_argument("--link-type", choices=("symlink", "hardlink"), default="symlink",
                      help="what --link-to and --rejected-link-to make (default symlink)")
    acts.add_argument("--dry-run", action="store_true",
                      help="score and print what would be done; touch no file (a manifest is written only "
                           "with an explicit --manifest)")
    man = p.add_argument_group("manifest")
    man.add_argument("--manifest", metavar="FILE", default=None,
                     help="where to write it (.jsonl default, .csv, .parquet); default curate-manifest.jsonl, "
                          "or the --resume file")
    man.add_argument("--format", dest="manifest_format", choices=("jsonl", "csv", "parquet"), default=None,
                     help="manifest format (default: from the file suffix)")
    man.add_argument("--resume", metavar="MANIFEST",
                     help="skip files this manifest holds with the same size, mtime, model and settings")
    sc = p.add_argument_group("scoring")
    sc.add_argument("--model", default=None, metavar="ID_OR_PATH", help="model folder, .safetensors or Hub id")
    sc.add_argument("--revision", default=None, help="Hub revision of --model")
    sc.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    sc.add_argument("--detector", choices=DETECTORS, default="auto")
    sc.add_argument("--masker", choices=MASKERS, default="auto")
    sc.add_argument("--patches", type=int, default=100, metavar="N", help="about N patches per face (default 100)")
    sc.add_argument("--batch-size", type=int, default=None, metavar="N",
                    help="patches per forward pass (default 16 on CPU, 256 on GPU); with --engine ray: "
                         "images per Ray batch (default 16)")
    sc.add_argument("--workers", type=int, default=None, metavar="N",
                    help="threads that read, detect and score (default: the usable cores on CPU, up to 8 "
                         "with a GPU; 0 = one image at a time)")
    sc.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                    help="network precision (autocast); fp32 (default) gives the reference numbers")
    sc.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local (default) or ray: score on a Ray cluster with Ray Data (pip install effres[ray]); "
                         "the manifest is then Parquet")
    sc.add_argument("--ray-address", default=None, help="Ray cluster address (default: start or join a local one)")
    sc.add_argument("--concurrency", type=int, default=None, metavar="N", help="Ray scoring actors (default 1)")
    sc.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray actor (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no model line and no detector choice "
                   "on stderr (errors and the summary still go there)")
    p.set_defaults(run=run)
    return p


def _action(args, prefix: str):
    from ..curate import Action

    for kind, attr in (("copy", "copy_to"), ("move", "move_to"), ("link", "link_to")):
        folder = getattr(args, prefix + attr)
        if folder:
            return Action(args.link_type if kind == "link" else kind, folder)
    return None


def _check(args) -> str | None:
    if not args.inputs and not args.from_list:
        return "give images, folders, glob patterns or --from-list FILE"
    if args.min_ratio is not None and not 0 <= args.min_ratio <= 1:
        return f"--min-ratio must be in [0, 1], got {args.min_ratio}"
    for name in ("min_effective_pixels", "top_n"):
        if getattr(args, name) < 0:
            return f"--{name.replace('_', '-')} must be >= 0"
    if args.patches < 1:
        return f"--patches must be at least 1, got {args.patches}"
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size must be at least 1, got {args.batch_size}"
    if args.workers is not None and args.workers < 0:
        return f"--workers must be >= 0, got {args.workers}"
    return None


def run(args) -> int:
    from ..curate import CurateOptions, Rules, batch_score_fn, collect_inputs, curate, model_fingerprint, scorer_settings
    from ._model import load_effres

    problem = _check(args)
    if problem:
        print(f"effres curate: {problem}", file=sys.stderr)
        return 2
    try:
        inputs = collect_inputs(args.inputs, args.from_list)
    except ValueError as err:
        print(f"effres curate: {err}", file=sys.stderr)
        return 2
    if not inputs:
        print("effres curate: no images found in " + ", ".join(args.inputs + args.from_list), file=sys.stderr)
        return 1
    manifest = args.manifest or (None if args.dry_run else args.resume or
                                 ("curate-manifest.parquet" if args.engine == "ray" else "curate-manifest.jsonl"))
    if args.engine == "ray" and manifest and not (args.manifest_format in (None, "parquet")
                                                 and manifest.endswith((".parquet", ".pq"))):
        print("effres curate: --engine ray writes a Parquet manifest: give --manifest FILE.parquet", file=sys.stderr)
        return 2
    options = CurateOptions(rules=Rules(args.min_ratio, args.min_effective_pixels, args.top_n, args.faces),
                            kept=_action(args, ""), rejected=_action(args, "rejected_"), dry_run=args.dry_run,
                            manifest=manifest, manifest_format=args.manifest_format, resume=args.resume,
                            progress=not args.quiet)
    model = load_effres("curate", args.model, revision=args.revision, device=args.device,
                        detector=args.detector, masker=args.masker, n_patches=args.patches)
    if model is None:
        return 2
    fingerprint, settings = model_fingerprint(args.model, args.revision), scorer_settings(model, args.precision)
    if not args.quiet:
        print(f"effres: model {fingerprint} on {model.device}, detector {model.detector_resolved}, masker "
              f"{model.masker_resolved}; {len(inputs)} files", file=sys.stderr)
    if args.engine == "ray":
        try:
            from ..integrations.ray import ray_score_fn
        except ImportError as err:
            print(f"effres curate: --engine ray needs Ray Data: pip install 'effres[ray]' ({err})", file=sys.stderr)
            return 2
        score = ray_score_fn(args.model, fingerprint, settings, revision=args.revision, device=args.device,
                             detector=args.detector, masker=args.masker, n_patches=args.patches,
                             precision=args.precision, batch_size=args.batch_size or 16,
                             concurrency=args.concurrency or 1, num_gpus=args.num_gpus, address=args.ray_address)
    else:
        from ..measure.batch import BatchScorer

        scorer = BatchScorer(model, batch_size=args.batch_size, workers=args.workers, precision=args.precision,
                             keep_maps=False)
        score = batch_score_fn(scorer, fingerprint, settings)
    try:
        summary = curate(inputs, score, options, fingerprint, settings)
    except (OSError, ValueError) as err:
        print(f"effres curate: {err}", file=sys.stderr)
        return 2
    if summary.interrupted:
        print(f"effres curate: interrupted after {summary.scored} images; every finished score is in "
              f"{summary.manifest}: run again with --resume {summary.manifest}", file=sys.stderr)
        return 130
    print(("dry run: " if args.dry_run else "") + summary.line()
          + (f"; manifest {summary.manifest}" if summary.manifest else ""), file=sys.stderr)
    return 1 if summary.failed or summary.clashes or summary.action_failures else 0
