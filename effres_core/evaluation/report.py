"""Reports of evaluation results: JSON-ready values, the Markdown tables and the ratio-vs-factor plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence


def jsonable(obj):
    """A copy of a report with NaN/inf replaced by None, so it is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------- reporting

def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_markdown(reports: Mapping[str, dict]) -> str:
    """Markdown tables with the scorers side by side (``reports`` as :func:`evaluate_many` returns)."""
    names = list(reports)
    if not names:
        return ""
    out = []
    first = reports[names[0]]
    flavours = [f for f in ("unseen", "seen", "all") if f in first.get("mixed", {})]
    if flavours:
        out.append("### Mixed folders (10 versions of one face at 10 true factors, each with its own "
                   "resizers and nuisance)\n")
        header = ["scorer", "folders", "folder SRCC", "folder PRA", "pooled SRCC", "MAE (factor 1/8..1)",
                  "share within ±0.1"]
        rows = []
        for f in flavours:
            for n in names:
                m = reports[n]["mixed"][f]
                rows.append([n, f, _fmt(m["folder_srcc"]), _fmt(m["folder_pra"]), _fmt(m["pooled_srcc"]),
                             _fmt(m.get("mae")), _fmt(m.get("within_0.1"))])
        out.append(_table(header, rows))
    for key, title in (("ladders", "Plain ladders per training kernel (mean SRCC over faces)"),
                       ("families", "Degradation families training never used (mean SRCC over faces)"),
                       ("robustness", "Robustness: largest relative change of a sharp face's score "
                                      "(mean over faces; 0 is best)")):
        sets = list(first.get(key, {}))
        if sets:
            out.append(f"\n### {title}\n")
            out.append(_table(["set"] + names, [[s] + [_fmt(reports[n][key].get(s)) for n in names] for s in sets]))
    labelled = [n for n in names if "labels" in reports[n]]
    if labelled:
        out.append("\n### Labelled folders\n")
        out.append(_table(["scorer", "folder SRCC", "folder PRA", "pooled SRCC", "folders", "images"],
                          [[n, _fmt(reports[n]["labels"]["folder_srcc"]), _fmt(reports[n]["labels"]["folder_pra"]),
                            _fmt(reports[n]["labels"]["pooled_srcc"]), str(reports[n]["labels"]["n_folders"]),
                            str(reports[n]["labels"]["n_images"])] for n in labelled]))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ plot

def plot_ratio_vs_factor(report: dict, path: str | Path, size: tuple[int, int] = (640, 520),
                         title: str | None = None) -> Path:
    """Scatter of predicted ratio against true factor on the mixed folders (PIL, no matplotlib):
    the diagonal is perfect, the grey band is ±0.1, colours are the folder flavours."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    left, right, top, bottom = 62, 20, 44, 52
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def xy(t: float, p: float) -> tuple[float, float]:
        return left + t * (w - left - right), h - bottom - p * (h - top - bottom)

    band = [xy(0, 0.1), xy(0.9, 1.0), xy(1, 1), xy(1, 0.9), xy(0.1, 0), xy(0, 0)]
    d.polygon(band, fill=(228, 228, 228))
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        x0, y0 = xy(v, 0)
        d.line([x0, y0, x0, y0 + 5], fill="black")
        d.text((x0 - 10, y0 + 8), f"{v:.2f}", fill="black", font=font)
        x1, y1 = xy(0, v)
        d.line([x1 - 5, y1, x1, y1], fill="black")
        d.text((x1 - 36, y1 - 6), f"{v:.2f}", fill="black", font=font)
        d.line([xy(v, 0), xy(v, 1)], fill=(240, 240, 240))
        d.line([xy(0, v), xy(1, v)], fill=(240, 240, 240))
    d.line([xy(0, 0), xy(1, 1)], fill=(120, 120, 120), width=1)
    d.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    colours = {"seen": (31, 119, 180), "unseen": (230, 110, 20)}
    for t, p, flavour in report.get("points", []):
        if p is None or not math.isfinite(p):
            continue
        x, y = xy(min(max(t, 0), 1), min(max(p, -0.02), 1.02))
        c = colours.get(flavour, (90, 90, 90))
        d.ellipse([x - 3, y - 3, x + 3, y + 3], outline=c, width=2)
    d.text((left + (w - left - right) / 2 - 40, h - 22), "true factor", fill="black", font=font)
    d.text((6, top - 18), "predicted ratio", fill="black", font=font)
    lx = left + 12
    for i, (name, c) in enumerate(colours.items()):
        ly = top + 10 + 16 * i
        d.ellipse([lx, ly, lx + 7, ly + 7], outline=c, width=2)
        d.text((lx + 12, ly - 3), f"{name} nuisances/resizers", fill="black", font=font)
    d.text((left, 6), title or f"{report.get('scorer', '')}: mixed folders", fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
