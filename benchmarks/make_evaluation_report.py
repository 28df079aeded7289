"""Write ``docs/evaluation.md`` (and its plot) from a fresh evaluation: the model and the three
classical baselines side by side on sets generated from sharp validation faces.

    python benchmarks/make_evaluation_report.py --sharp ../shared/data/faces/val --out docs/evaluation.md
    python benchmarks/make_evaluation_report.py --no-model ...      # baselines only

Nothing in the report is typed by hand: every number comes from this run.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The targets for the shipped model (docs, not tests).
TARGETS = {"folder_srcc": 0.95, "folder_pra": 0.93, "pooled_srcc": 0.93, "ladder": 0.98}


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def _check(value, target) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return "met" if value >= target else "**not met**"


def headline(model: dict, baselines: dict[str, dict]) -> str:
    """The targets of the model, met or not, with the best baseline for comparison."""
    unseen = model["mixed"]["unseen"]
    rows = []
    for key, label in (("folder_srcc", "per-folder SRCC"), ("folder_pra", "per-folder PRA"),
                       ("pooled_srcc", "pooled SRCC")):
        best = max((b["mixed"]["unseen"][key] for b in baselines.values()), default=float("nan"))
        rows.append(f"| unseen mixed folders: {label} | >= {TARGETS[key]} | {_fmt(unseen[key])} | {_fmt(best)} | "
                    f"{_check(unseen[key], TARGETS[key])} |")
    rows.append(f"| worst plain ladder (training kernels): SRCC | >= {TARGETS['ladder']} | "
                f"{_fmt(model.get('ladder_min_srcc'))} | - | {_check(model.get('ladder_min_srcc'), TARGETS['ladder'])} |")
    rows.append(f"| worst unseen degradation family: SRCC | >= {TARGETS['ladder']} | "
                f"{_fmt(model.get('family_min_srcc'))} | - | {_check(model.get('family_min_srcc'), TARGETS['ladder'])} |")
    allm = model["mixed"]["all"]
    rows.append(f"| mixed folders, factors 1/8..1: share within ±0.1 | 1.0 | {_fmt(allm.get('within_0.1'))} | - | "
                f"{_check(allm.get('within_0.1'), 0.999)} |")
    rows.append(f"| mixed folders, factors 1/8..1: mean abs. error | - | {_fmt(allm.get('mae'))} | - | - |")
    return "\n".join(["| target | wanted | model | best baseline | |", "|---|---|---|---|---|"] + rows)


def weaknesses(model: dict, baselines: dict[str, dict]) -> list[str]:
    """Sets where the model misses the target or a baseline does better: said plainly."""
    notes = []
    for kind, label in (("ladders", "ladder"), ("families", "family")):
        for name, v in model[kind].items():
            if v is None or not math.isfinite(v):
                notes.append(f"{label} `{name}`: no score")
                continue
            better = [b for b, r in baselines.items() if (r[kind].get(name) or -2) > v + 1e-9]
            if v < TARGETS["ladder"] or better:
                notes.append(f"{label} `{name}`: SRCC {v:.3f}" + (f" (target {TARGETS['ladder']})" if v < TARGETS["ladder"]
                                                                  else "") +
                             (f"; beaten by {', '.join(better)}" if better else ""))
    for flavour in ("unseen", "seen"):
        m = model["mixed"][flavour]
        for key in ("folder_srcc", "folder_pra", "pooled_srcc"):
            better = [b for b, r in baselines.items() if r["mixed"][flavour][key] > m[key]]
            if better:
                notes.append(f"mixed `{flavour}` {key}: beaten by {', '.join(better)}")
    for name, v in model["robustness"].items():
        if math.isfinite(v) and v > 0.1:
            notes.append(f"robustness `{name}`: a sharp face's score moves by up to {100 * v:.0f}%")
    return notes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model id/folder/.safetensors (default: the bundled model)")
    p.add_argument("--no-model", action="store_true", help="baselines only")
    p.add_argument("--sharp", default=str(ROOT.parent / "shared" / "data" / "faces" / "val"))
    p.add_argument("--out", default=str(ROOT / "docs" / "evaluation.md"))
    p.add_argument("--plot", default=None, help="default: docs/images/ratio_vs_factor.png beside --out")
    p.add_argument("--json", default=None, help="also write the raw reports here")
    p.add_argument("--max-faces", type=int, default=None)
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--n-patches", type=int, default=100)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a busy 2-core machine: OpenMP waits dominate)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    import torch

    from effres_core.evaluation import (baseline_scorers, evaluate_many, format_markdown, jsonable, model_scorer,
                                      plot_ratio_vs_factor)

    torch.set_num_threads(args.threads)
    scorers = {}
    model_desc = "none (baselines only)"
    if not args.no_model:
        scorer = model_scorer(args.model, n_patches=args.n_patches)
        scorers["effres"] = scorer
        model_desc = f"`{args.model or 'bundled default'}` ({json.dumps(scorer.net.config)})"
    scorers.update(baseline_scorers())
    start = time.perf_counter()
    reports = evaluate_many(scorers, args.sharp, max_faces=args.max_faces, max_side=args.max_side,
                            progress=not args.quiet)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    plot = Path(args.plot) if args.plot else out.parent / "images" / "ratio_vs_factor.png"
    first = next(iter(reports.values()))
    lines = [
        "# Evaluation",
        "",
        "Generated by `benchmarks/make_evaluation_report.py`; do not edit by hand. Command:",
        "",
        "```",
        "python benchmarks/make_evaluation_report.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "```",
        "",
        f"- model: {model_desc}, {args.n_patches} patches per image, whole crop (no mask)",
        f"- sharp sources: {first['n_faces']} faces from `{Path(args.sharp).name}/` ({', '.join(first['faces'])}), "
        f"cropped by {', '.join(first['cropped_by'])}, halved (antialiased) and capped at {args.max_side} px",
        f"- evaluation time (all scorers, {args.threads} thread(s)): {seconds:.0f} s",
        "",
        "How the sets are made (`effres_core/evaluation/evalsets.py`): **mixed folders** hold 10 versions of one face "
        "at 10 true factors (log-uniform strata of [1/10, 1], the top one 1), each with its own down/up "
        "resizer and its own nuisance; `seen` uses the training's kernels and nuisances, `unseen` only "
        "OpenCV/Pillow resizers (OpenCV cubic a=-0.75, linear and Lanczos-4 without antialiasing, Pillow "
        "Hamming) and nuisances training never applies (shot noise, salt-and-pepper, WebP, Laplacian "
        "sharpening, saturation, S-curves); one version per cycle is a smaller but sharp copy. **Ladders**: "
        "one kernel down and up at factors 1, 1/1.5, 1/2, 1/3, 1/4, 1/6, 1/8. **Families**: Gaussian "
        "blur and defocus (truth = order of strength), shot-noisy, Laplacian-sharpened and JPEG-50 "
        "upscales, and other libraries' resizers. **Robustness**: a sharp face under JPEG/WebP quality "
        "90..50 or shot noise; the number is the largest relative change of its score (0 is best).",
        "",
        "Baselines: variance of the Laplacian, share of spectral energy above 1/4 cycle per pixel, and "
        "JPEG bytes per pixel at quality 75. Only their rankings are meaningful.",
        "",
    ]
    if "effres" in reports:
        base = {k: v for k, v in reports.items() if k != "effres"}
        lines += ["## Targets", "", headline(reports["effres"], base), ""]
        plot_ratio_vs_factor(reports["effres"], plot)
        rel = Path("images") / plot.name if plot.parent == out.parent / "images" else plot
        lines += ["## Predicted ratio against true factor (mixed folders)", "", f"![ratio vs factor]({rel})", ""]
        notes = weaknesses(reports["effres"], base)
        lines += ["## Where it is weak", ""] + ([f"- {n}" for n in notes] or ["- nothing below target here"]) + [""]
    lines += ["## Results", "", format_markdown(reports)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(jsonable(reports), indent=1) + "\n")
    print(f"wrote {out}" + (f" and {plot}" if "effres" in reports else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
