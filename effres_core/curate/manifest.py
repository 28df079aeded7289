"""The curate manifest: one row per file, JSONL (default), CSV or Parquet, safe against kills.

While a run goes, rows are appended and flushed one by one (JSONL and CSV to the manifest
itself, Parquet to a ``<manifest>.partial.jsonl`` journal beside it), so a kill loses at most the
images in flight and a half-written last line is ignored (and cut off when the run resumes). At
the end the whole manifest is rewritten with the final decisions through a temporary file and an
atomic rename, so it is never left truncated.

Resume: :class:`ResumeIndex` maps each path to its row; a file counts as done when its size,
mtime, model and settings match the row (one ``os.stat`` per file, no re-hashing). For 100,000
rows that is a dict lookup each (``benchmarks/bench_curate.py --resume-rows``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

FORMATS = ("jsonl", "csv", "parquet")

#: The manifest's columns, in order. ``faces`` is a list in JSONL and a JSON string in CSV and Parquet.
COLUMNS = ("path", "rel", "size", "mtime", "sha256", "height", "width", "ratio", "effective_height",
           "effective_width", "n_faces", "faces", "reason", "error", "decision_ratio", "decision", "decision_reason",
           "action", "destination", "action_status", "model", "settings", "scored_at")
INT_COLUMNS = ("size", "height", "width", "effective_height", "effective_width", "n_faces")
FLOAT_COLUMNS = ("mtime", "ratio", "decision_ratio")


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The manifest format: ``fmt`` if given, else from the suffix (``.csv``, ``.parquet``, else JSONL)."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"manifest format must be one of {FORMATS}, got {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "jsonl")


def journal_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".partial.jsonl")


def _flat(row: dict) -> dict:
    """A row for CSV/Parquet: ``faces`` as a JSON string, every column present."""
    out = {c: row.get(c) for c in COLUMNS}
    out["faces"] = json.dumps(row.get("faces") or [])
    return out


def _unflat(row: dict) -> dict:
    out = {c: row.get(c) for c in COLUMNS}
    for c in COLUMNS:
        v = out[c]
        if isinstance(v, float) and v != v:  # NaN from pandas/pyarrow = missing
            out[c] = None
        elif v == "" and c not in ("rel",):
            out[c] = None
    for c in INT_COLUMNS:
        if out[c] is not None:
            out[c] = int(float(out[c]))
    for c in FLOAT_COLUMNS:
        if out[c] is not None:
            out[c] = float(out[c])
    faces = out["faces"]
    out["faces"] = json.loads(faces) if isinstance(faces, str) and faces else (list(faces) if faces else [])
    return out


def _cut_partial_line(path: Path) -> None:
    """Drop a last line without its newline (a write cut short by a kill)."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Walk back to the previous newline.
        pos, chunk = size, 65536
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            i = block.rfind(b"\n")
            if i >= 0:
                f.truncate(start + i + 1)
                return
            pos = start
        f.truncate(0)


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # cut short by a kill
            line = line.strip()
            if line:
                try:
                    rows.append(_unflat(json.loads(line)))
                except json.JSONDecodeError:
                    continue
    return rows


def _read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    return [_unflat(r) for r in csv.DictReader(io.StringIO(text))]


def read_manifest(path: str | os.PathLike, fmt: str | None = None) -> list[dict]:
    """All rows of a manifest (plus its Parquet journal, when a run was cut short), later rows of
    the same path winning. A missing file gives no rows."""
    path = Path(path)
    fmt = format_of(path, fmt)
    rows: list[dict] = []
    if path.is_file():
        if fmt == "jsonl":
            rows = _read_jsonl(path)
        elif fmt == "csv":
            rows = _read_csv(path)
        else:
            import pyarrow.parquet as pq

            rows = [_unflat(r) for r in pq.read_table(path).to_pylist()]
    if fmt == "parquet" and journal_path(path).is_file():
        rows += _read_jsonl(journal_path(path))
    latest: dict[str, dict] = {}
    for r in rows:
        if r.get("path"):
            latest[r["path"]] = r
    return list(latest.values())


def _jsonl_line(row: dict) -> str:
    """One manifest row as a JSON line, columns in :data:`COLUMNS` order."""
    return json.dumps({c: row.get(c) for c in COLUMNS}, default=_json_default) + "\n"


class ManifestWriter:
    """Append rows as they come (flushed, fsynced at most once a second), then :meth:`finalize`
    rewrites the manifest with every row atomically.

    ``append_to_existing``: keep the rows already in the file (resuming into the same manifest).
    """

    def __init__(self, path: str | os.PathLike, fmt: str | None = None, append_to_existing: bool = False,
                 fsync_every: float = 1.0):
        self.path = Path(path)
        self.fmt = format_of(self.path, fmt)
        if self.fmt == "parquet":
            import pyarrow  # noqa: F401 - fail before scoring, not at the end
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.live = journal_path(self.path) if self.fmt == "parquet" else self.path
        mode = "a" if append_to_existing and self.live.exists() else "w"
        if mode == "a":
            _cut_partial_line(self.live)
        header_needed = self.fmt == "csv" and (mode == "w" or self.live.stat().st_size == 0)
        self._f = open(self.live, mode, encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._f, fieldnames=COLUMNS) if self.fmt == "csv" else None
        if header_needed:
            self._csv.writeheader()
        self._fsync_every, self._last_sync = fsync_every, time.monotonic()
        self.rows_written = 0

    def write(self, row: dict) -> None:
        if self._csv is not None:
            self._csv.writerow(_flat(row))  # the csv writer hands each row to one write(): a kill cuts at most this line
        else:
            self._f.write(_jsonl_line(row))
        self._f.flush()
        self.rows_written += 1
        if time.monotonic() - self._last_sync >= self._fsync_every:
            os.fsync(self._f.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def finalize(self, rows: Iterable[dict]) -> Path:
        """Write all ``rows`` as the manifest (temporary file + rename); drop the Parquet journal."""
        self.close()
        write_manifest(self.path, rows, self.fmt)
        if self.fmt == "parquet" and self.live.exists():
            self.live.unlink()  # our own journal, now inside the Parquet file
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _json_default(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to the manifest")


def write_manifest(path: str | os.PathLike, rows: Iterable[dict], fmt: str | None = None) -> Path:
    """Write a whole manifest atomically: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    fmt = format_of(path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if fmt == "parquet":
            os.close(fd)
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist([_flat(r) for r in rows], schema=parquet_schema()), tmp)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                if fmt == "csv":
                    w = csv.DictWriter(f, fieldnames=COLUMNS)
                    w.writeheader()
                    w.writerows(_flat(r) for r in rows)
                else:
                    for r in rows:
                        f.write(_jsonl_line(r))
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def parquet_schema():
    """The Arrow schema of a Parquet manifest (the same columns as JSONL; ``faces`` as JSON text)."""
    import pyarrow as pa

    types = {c: pa.int64() for c in INT_COLUMNS}
    types.update({c: pa.float64() for c in FLOAT_COLUMNS})
    return pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])


class ResumeIndex:
    """Rows of an earlier run by path; :meth:`lookup` returns the row when the file is unchanged
    (same size and mtime) and was scored by the same model with the same settings."""

    def __init__(self, rows: Iterable[dict], model: str, settings: str):
        self.model, self.settings = model, settings
        self.rows = {r["path"]: r for r in rows if r.get("path")}

    @classmethod
    def load(cls, path: str | os.PathLike, model: str, settings: str, fmt: str | None = None) -> "ResumeIndex":
        return cls(read_manifest(path, fmt), model, settings)

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, path: str, size: int | None, mtime: float | None) -> dict | None:
        row = self.rows.get(path)
        if row is None or size is None:
            return None
        if row.get("size") != size or row.get("mtime") != mtime:
            return None
        if row.get("model") != self.model or row.get("settings") != self.settings:
            return None
        return row
