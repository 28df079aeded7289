"""What to curate: files, folders (recursive), glob patterns and path lists, each file with the
root its relative path is kept under (so copies and moves keep the folder structure)."""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from ..measure.imageio import IMAGE_SUFFIXES

GLOB_CHARS = "*?["


@dataclass(frozen=True)
class InputFile:
    """An input image: ``path`` (absolute, symlinks not resolved) and ``rel``, its path under the
    input it came from (a folder, a glob's fixed prefix, a list's common folder, or a file's own folder)."""

    path: str
    rel: str


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def _walk(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
    return found


def read_path_list(list_file: str | os.PathLike) -> list[str]:
    """Paths from a text file (one per line; ``#`` comments) or a CSV (its ``path`` column, else the
    first column). Relative paths are taken relative to the current folder."""
    list_file = Path(list_file)
    try:
        text = list_file.read_text()
    except OSError as err:
        raise ValueError(f"cannot read the path list {list_file}: {err.strerror or err}") from err
    if list_file.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = header.index("path") if "path" in header else 0
        body = rows[1:] if "path" in header else rows
        return [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def collect_inputs(specs: list[str], list_files: list[str] | None = None) -> list[InputFile]:
    """Expand files, folders, globs and path lists into unique :class:`InputFile`\\ s, in order.

    Folders are walked recursively (image suffixes only, sorted); a file named on its own is always
    taken whatever its suffix (a broken or odd file is reported when read, not dropped silently).
    """
    out: list[InputFile] = []
    seen: set[str] = set()

    def add(path: str, root: str) -> None:
        full = os.path.abspath(path)
        if full in seen:
            return
        seen.add(full)
        out.append(InputFile(full, os.path.relpath(full, os.path.abspath(root))))

    for spec in specs:
        if os.path.isdir(spec):
            for f in _walk(Path(spec)):
                add(f, spec)
        elif any(c in spec for c in GLOB_CHARS) and not os.path.exists(spec):
            prefix = spec[:min(spec.index(c) for c in GLOB_CHARS if c in spec)]
            root = prefix if prefix.endswith(os.sep) else os.path.dirname(prefix)
            matches = sorted(glob.glob(spec, recursive=True))
            for f in matches:
                if os.path.isdir(f):
                    for g in _walk(Path(f)):
                        add(g, root or ".")
                elif _is_image(f):
                    add(f, root or ".")
        else:
            add(spec, os.path.dirname(os.path.abspath(spec)))
    for list_file in list_files or []:
        listed = [os.path.abspath(p) for p in read_path_list(list_file)]
        if not listed:
            continue
        root = os.path.commonpath([os.path.dirname(p) for p in listed])
        for p in listed:
            add(p, root)
    return out
