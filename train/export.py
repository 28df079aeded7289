"""Export a training run as a publishable model folder (and optionally push it to the Hub).

    python train/export.py runs/NAME exports/NAME                 # best/ checkpoint (falls back to last/)
    python train/export.py runs/NAME exports/NAME --which last
    python train/export.py runs/NAME exports/NAME --push-to-hub owner/effres-face-mobilenetv2
    python train/export.py runs/NAME exports/NAME --which last --calibration CALIBRATED_DIR \
        --append docs/model-card/*.md                             # the bundled default's card

The folder holds ``model.safetensors`` and ``config.json`` (loadable by
``EffRes.from_pretrained(OUT_DIR)``), ``MODEL_CARD.md`` with the training data, recipe, steps,
validation numbers and limits, and a ``README.md`` copy of the card (the Hub shows that one).
``--calibration`` takes the monotone map of a folder written by ``train/calibrate.py`` for the same
weights (and the card says how it was fitted); ``--append`` adds Markdown sections measured by
the benchmark scripts (small faces, reliability, budget).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from effres_core.model import hub  # noqa: E402

CARD_NAME = "MODEL_CARD.md"

# Recipe keys shown in the card, in reading order, with what they mean.
_RECIPE = [
    ("backbone", "backbone"),
    ("imagenet", "backbone started from ImageNet weights"),
    ("patch_size", "patch size (px)"),
    ("stride", "patch stride (px)"),
    ("loss", "loss"),
    ("kernels", "resizers (down and up)"),
    ("prescale_height", "prescale height range (px)"),
    ("prescale_probability", "share of samples prescaled"),
    ("min_factor", "smallest degradation factor"),
    ("max_factor", "largest degradation factor"),
    ("degrade_probability", "share of samples degraded"),
    ("random_offset", "random patch-grid offset"),
    ("min_foreground", "training patches: least share of face"),
    ("mask", "background masked in training"),
    ("nuisances", "nuisance augmentation (noise, JPEG, sharpening, tone, colour, grayscale)"),
    ("nuisance_probability", "nuisance probability"),
    ("micro_batch", "micro-batch (patches)"),
    ("effective_batch", "effective batch (patches per optimizer step)"),
    ("epochs", "epochs"),
    ("patches_per_epoch", "patches per epoch"),
    ("lr", "learning rate (Adam 0.9/0.999/1e-8)"),
    ("lr_decay", "learning-rate factor per epoch"),
    ("adversarial", "adversarial augmentation"),
    ("pgd_steps", "PGD steps"),
    ("pgd_step_size", "PGD L2 step (pixel units of 255)"),
    ("pgd_linf", "PGD L-infinity radius (pixel units of 255)"),
    ("pgd_random_init", "PGD random start"),
    ("adversarial_ratio", "adversarial steps per regular step"),
    ("regular_weight", "loss weight of the regular step"),
    ("adversarial_weight", "loss weight of the adversarial step"),
    ("init_weights", "started from the weights of"),
    ("seed", "seed"),
]

_LOSS_NAMES = {"mape": "mean absolute percentage error", "mae": "mean absolute error",
               "mse": "mean squared error", "msle": "mean squared logarithmic error"}

_METRIC_NAMES = {
    "folder_srcc": "per-folder SRCC (mean over mixed folders)",
    "folder_pra": "per-folder pairwise ranking accuracy (mean)",
    "pooled_srcc": "SRCC pooled over all folders (calibration across faces)",
    "val_mape": "validation MAPE on self-supervised patches",
    "mae": "mean absolute error of the ratio",
    "within_0.1": "share of images within 0.1 of the true ratio",
}


class ExportError(RuntimeError):
    """The run folder cannot be exported (missing checkpoint, config ...)."""


def _checkpoint(run_dir: Path, which: str) -> tuple[Path, str]:
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    folder = run_dir / which
    if (folder / hub.WEIGHTS_NAME).is_file():
        return folder, which
    other = "last" if which == "best" else "best"
    # A run without validation data never writes best/: its last/ is the only model there is.
    if which == "best" and (run_dir / other / hub.WEIGHTS_NAME).is_file():
        return run_dir / other, other
    raise ExportError(f"{run_dir} has no {which}/{hub.WEIGHTS_NAME}: is it a training run folder?")


def _read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                if k is None or v in (None, ""):
                    continue
                try:
                    parsed[k] = float(v)
                except ValueError:
                    parsed[k] = v
            rows.append(parsed)
    return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " - ".join(_fmt(v) for v in value)
    return str(value)


def _share(run_config: dict, key: str, default: float) -> str:
    return f"{float(run_config.get(key, default)):.0%}"


def _data_summary(folder: str | None) -> str:
    if not folder:
        return "unknown (the run's config names no data folder)"
    path = Path(folder)
    text = f"`{path.name or folder}`"
    if path.is_dir():
        from effres_core.measure.imageio import find_images

        text += f" ({len(find_images([path]))} image files at export time)"
        for candidate in (path / "SOURCES.md", path.parent / "SOURCES.md"):
            if candidate.is_file():
                text += f"; sources and licences: see `{candidate.name}` beside the data"
                break
    return text


def _calibration_section(calibration: dict) -> list[str]:
    lines = [
        "", "## Calibration", "",
        f"`config.json` holds a monotone map ({len(calibration.get('x', []))} knots, strictly increasing) that",
        "`EffResNet` applies to every patch score, so the scorer, the enhancer and guidance all see it.",
        "Being strictly increasing it changes no ranking, and the median of mapped patches is the mapped",
        "median.", "",
        f"- Fitted by `train/calibrate.py` on {calibration.get('fitted_on', 'an unrecorded set')}.",
    ]
    before, after = calibration.get("train_mae_before"), calibration.get("train_mae_after")
    if isinstance(before, float) and isinstance(after, float):
        lines.append(f"- On those sets (true factors 1/8..1): mean absolute error {before:.3f} -> {after:.3f}, "
                     f"within +-0.1 {calibration['train_within_0.1_before']:.0%} -> "
                     f"{calibration['train_within_0.1_after']:.0%} (in-sample: the map was fitted there).")
    return lines


def model_card(run_dir: str | Path, config: dict, run_config: dict, metrics: list[dict], which: str,
               appendices: list[str] = ()) -> str:
    """The model card text (Markdown with Hub front matter) for one exported checkpoint."""
    run_dir = Path(run_dir)
    steps = int(config.get("trained_steps", 0))
    eff = int(run_config.get("effective_batch", 0) or 0)
    per_epoch = max(1, int(run_config.get("patches_per_epoch", 0) or 0) // eff) if eff else 0
    validation = config.get("validation") or {}
    backbone = config.get("backbone", "?")
    if float(config.get("width", 1.0)) != 1.0:
        backbone = f"tiny test network (width {config['width']})"
    lines = [
        "---",
        "library_name: effres",
        "license: mit",
        "tags: [image-quality-assessment, effective-resolution, face, pytorch, safetensors]",
        "pipeline_tag: image-classification",
        "---",
        "",
        f"# effres: effective resolution of faces ({backbone}, {config.get('patch_size', '?')} px patches)",
        "",
        "Predicts the *effective resolution ratio* y in [0, 1] of face images: the share of the pixel",
        "resolution that carries real detail (y = 1/4 looks like a 4x upscale). A reimplementation of",
        "Kansy et al., \"Self-Supervised Effective Resolution Estimation with Adversarial Augmentations\",",
        "WACV Workshops 2023; the authors released no weights, these were trained by the effres project.",
        "",
        "```python",
        "from effres_core.measure.scorer import EffRes",
        "model = EffRes.from_pretrained(\"THIS_FOLDER_OR_REPO_ID\")",
        "result = model.score(\"portrait.jpg\")",
        "print(result.ratio, result.effective_resolution)",
        "```",
        "",
        "## Training data",
        "",
        f"- Sharp faces: {_data_summary(run_config.get('data'))}.",
        f"- Validation faces: {_data_summary(run_config.get('val_data')) if run_config.get('val_data') else 'none'}.",
        f"- Labels are self-supervised: each face is ({_share(run_config, 'prescale_probability', 0.8)}) prescaled "
        f"and ({_share(run_config, 'degrade_probability', 0.9)}) downscaled by a random factor",
        f"  with one of {len(run_config.get('kernels') or range(8))} kernels and scaled back up; the label is "
        "min(native/prescaled height, factor).",
        "  No human labels were used.",
        "",
        "## Recipe",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    for key, meaning in _RECIPE:
        if key in run_config:
            lines.append(f"| {meaning} (`{key}`) | {_fmt(run_config[key])} |")
    lines += [
        "",
        f"Loss: {_LOSS_NAMES.get(run_config.get('loss', 'mape'), run_config.get('loss'))}. Every regular step is "
        "paired with an adversarial step on",
        "the same patches (L2 PGD with BatchNorm statistics frozen, no random start), equal weight.",
        "",
        "## Training progress",
        "",
        f"- Checkpoint: `{which}/` of the run `{run_dir.name}`.",
        f"- Optimizer steps: {steps}" + (f" ({steps * eff} patches at {eff} per step"
                                          f"{f', {steps / per_epoch:.2f} epochs' if per_epoch else ''})" if eff else ""),
    ]
    if metrics:
        speeds = [r["patches_per_s"] for r in metrics if isinstance(r.get("patches_per_s"), float)]
        if speeds:
            lines.append(f"- Training speed: median {sorted(speeds)[len(speeds) // 2]:.1f} patches/s "
                         f"(including adversarial steps).")
        losses = [r for r in metrics if isinstance(r.get("loss"), float)]
        if losses:
            lines.append(f"- Training MAPE: {losses[0]['loss']:.3f} at step {int(losses[0]['step'])}, "
                         f"{losses[-1]['loss']:.3f} at step {int(losses[-1]['step'])}.")
    lines += ["", "## Validation", ""]
    if validation:
        lines += [
            "Mixed folders: 10 versions of one validation face at 10 known true factors, each with its",
            "own kernels and a nuisance that must not change the answer (noise, JPEG, sharpening, tone,",
            "grayscale, a smaller sharp copy); SRCC/PRA rank each folder against the truth.",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        for key, value in validation.items():
            if isinstance(value, (int, float)) and key != "seconds":
                lines.append(f"| {_METRIC_NAMES.get(key, key)} (`{key}`) | {_fmt(float(value))} |")
    history = [r for r in metrics if any(k in r for k in ("folder_srcc", "val_mape"))]
    if not validation:
        lines.append("No validation numbers were recorded for this checkpoint: it was saved between validations "
                     "(see the table below)." if history else
                     "No validation numbers were recorded for this checkpoint (the run had no validation data).")
    if history:
        keys = [k for k in ("val_mape", "folder_srcc", "folder_pra", "pooled_srcc") if any(k in r for r in history)]
        lines += ["", "Validation during training:", "", "| step | " + " | ".join(keys) + " |",
                  "|---" * (len(keys) + 1) + "|"]
        for r in history[-12:]:
            lines.append(f"| {int(r['step'])} | " + " | ".join(_fmt(r.get(k, float('nan'))) for k in keys) + " |")
    if config.get("calibration"):
        lines += _calibration_section(config["calibration"])
    lines += [
        "",
        "## Limits",
        "",
        "- Faces only: trained on face crops; other content (landscapes, text, cartoons) is out of scope.",
        "- Measures resolution (detail), not overall quality: noise, compression and tone are meant to",
        "  be ignored, but strong artefacts outside the training nuisances can still mislead it.",
        "- Small training set: the numbers above come from the few validation identities of the run,",
        "  not from a benchmark; the paper's human-labelled test sets were not available.",
        "- Ratios are relative to the image as given: upscaling an image lowers its ratio, and the model",
        "  cannot see detail above the native resolution of the patch.",
    ]
    if run_config.get("backbone") != "resnet50" or int(run_config.get("pgd_steps", 10)) < 10:
        lines.append("- A light recipe (see Recipe): smaller backbone or fewer PGD steps than the paper's "
                     "ResNet50 / 10-step PGD; expect lower accuracy than the paper reports.")
    for text in appendices:
        lines += ["", text.strip()]
    lines += ["", "Licence: MIT (the effres project). Check the licences of the training data listed above.", ""]
    return "\n".join(lines)


def export_run(run_dir: str | Path, out_dir: str | Path, push_to_hub: str | None = None,
               which: str = "best", private: bool = False, calibration: str | Path | None = None,
               append: list[str | Path] = ()) -> Path:
    """Write ``model.safetensors``, ``config.json``, ``MODEL_CARD.md`` and ``README.md`` to ``out_dir``.

    Args:
        run_dir: a ``train/run.py`` run folder (``config.yaml``, ``metrics.csv``, ``best/``, ``last/``).
        out_dir: where the model folder goes (created).
        push_to_hub: a Hub repo id (``owner/name``) to upload the folder to, or ``None``.
        which: ``"best"`` (falls back to ``last`` when the run never validated) or ``"last"``.
        private: create the Hub repo as private.
        calibration: a folder written by ``train/calibrate.py`` from these weights: its map is kept.
        append: Markdown files added to the card, in order, before the licence line.

    Returns:
        ``out_dir``.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise ExportError(f"run folder {run_dir} does not exist")
    folder, used = _checkpoint(run_dir, which)
    run_config = {}
    if (run_dir / "config.yaml").is_file():
        run_config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    # Loading strictly proves the checkpoint is complete before anything is written or uploaded.
    net = hub.load_weights_file(folder / hub.WEIGHTS_NAME)
    config = json.loads((folder / hub.CONFIG_NAME).read_text()) if (folder / hub.CONFIG_NAME).is_file() \
        else dict(net.config)
    extra = {k: v for k, v in config.items() if k not in ("backbone", "patch_size", "width")}
    extra["training"] = {k: run_config[k] for k, _ in _RECIPE if k in run_config}
    extra["checkpoint"] = used
    if calibration:
        calibrated = Path(calibration) / hub.CONFIG_NAME
        if not calibrated.is_file():
            raise ExportError(f"{calibration} has no {hub.CONFIG_NAME}: pass a folder written by train/calibrate.py")
        mapping = json.loads(calibrated.read_text()).get("calibration")
        if not mapping:
            raise ExportError(f"{calibrated} holds no calibration")
        net.set_calibration(mapping)
        extra["calibration"] = config["calibration"] = net.config["calibration"]
    appendices = []
    for path in append:
        if not Path(path).is_file():
            raise ExportError(f"--append file {path} does not exist")
        appendices.append(Path(path).read_text())
    hub.save_pretrained(net, out_dir, extra_config=extra)
    card = model_card(run_dir, config, run_config, _read_metrics(run_dir), used, appendices)
    (out_dir / CARD_NAME).write_text(card)
    (out_dir / "README.md").write_text(card)
    if push_to_hub:
        hub.upload_model_folder(out_dir, push_to_hub, private=private,
                                allow_patterns=[hub.WEIGHTS_NAME, hub.CONFIG_NAME, "README.md", CARD_NAME],
                                commit_message=f"Upload effres model ({used} of {run_dir.name}, step "
                                               f"{config.get('trained_steps', '?')})")
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="training run folder (runs/NAME)")
    parser.add_argument("out_dir", help="where to write the model folder")
    parser.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint to export")
    parser.add_argument("--push-to-hub", dest="push_to_hub", metavar="REPO_ID", help="also upload to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--calibration", metavar="DIR", help="keep the monotone map of this train/calibrate.py folder")
    parser.add_argument("--append", nargs="+", default=[], metavar="MD", help="Markdown sections to add to the card")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.run_dir, args.out_dir, push_to_hub=args.push_to_hub, which=args.which,
                         private=args.private, calibration=args.calibration, append=args.append)
    except (ExportError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported to {out}" + (f" and pushed to {args.push_to_hub}" if args.push_to_hub else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
