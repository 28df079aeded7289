"""One curate run: skip what an earlier manifest already holds, score the rest (recording each row
as it comes), decide, act, and rewrite the manifest with the final decisions.

The order matters for safety: every score is on disk (flushed and fsynced) before any file is
copied, linked or moved, so a move never happens for a file whose score could still be lost.
Decisions wait for the end because ``top_n`` compares all files.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .actions import Action, apply, file_sha256
from .inputs import InputFile
from .manifest import ManifestWriter, ResumeIndex, format_of
from .rules import Rules, decide


@dataclass
class CurateOptions:
    """What to do with the scores: the rules, the actions for kept and rejected files, the manifest."""

    rules: Rules = field(default_factory=Rules)
    kept: Action | None = None
    rejected: Action | None = None
    dry_run: bool = False
    manifest: str | None = "curate-manifest.jsonl"
    manifest_format: str | None = None
    resume: str | None = None
    progress: bool = True


@dataclass
class Summary:
    total: int = 0
    scored: int = 0
    reused: int = 0
    kept: int = 0
    rejected: int = 0
    failed: int = 0
    clashes: int = 0
    action_failures: int = 0
    seconds: float = 0.0
    scoring_seconds: float = 0.0
    manifest: str | None = None
    interrupted: bool = False

    @property
    def images_per_second(self) -> float:
        return self.scored / self.scoring_seconds if self.scoring_seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.total} files: {self.kept} kept, {self.rejected} rejected, {self.failed} failed"
                + (f", {self.reused} from the earlier manifest" if self.reused else "")
                + (f", {self.clashes} name clashes" if self.clashes else "")
                + (f", {self.action_failures} actions failed" if self.action_failures else "")
                + f"; scored {self.scored} in {self.scoring_seconds:.1f} s ({self.images_per_second:.2f} images/s), "
                  f"{self.seconds:.1f} s in all")


def model_fingerprint(model_id: str | None, revision: str | None = None) -> str:
    """``<name>@<first 12 hex of the weights' SHA-256>``: the ``model`` column resume matches on."""
    from ..model import hub

    weights = hub.resolve_weights(model_id, revision)
    return f"{model_id or 'default'}@{file_sha256(weights)[:12]}"


def scorer_settings(model, precision: str = "fp32") -> str:
    """The settings that change scores (the ``settings`` column resume matches on)."""
    return (f"detector={model.detector_resolved},masker={model.masker_resolved},patches={model.n_patches},"
            f"min_foreground={model.min_foreground},margin={model.margin},precision={precision}")


def result_row(result, file, rel: str, model: str, settings: str) -> dict:
    """A manifest row from a :class:`~effres_core.measure.scorer.ScoreResult` and what was read."""
    eff = result.effective_resolution or (None, None)
    size = result.image_size or (None, None)
    return {
        "path": file.path if file is not None else result.path, "rel": rel,
        "size": getattr(file, "size", None), "mtime": getattr(file, "mtime", None),
        "sha256": getattr(file, "sha256", None),
        "height": size[0], "width": size[1], "ratio": result.ratio,
        "effective_height": eff[0], "effective_width": eff[1],
        "n_faces": len(result.faces), "faces": [f.to_dict() for f in result.faces],
        "reason": result.reason, "error": result.error,
        "model": model, "settings": settings,
        "scored_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


#: ``score(inputs) -> rows`` for the files to score, in any order: the plain engine or Ray.
ScoreFn = Callable[[list[InputFile]], Iterator[dict]]


def batch_score_fn(scorer, model: str, settings: str) -> ScoreFn:
    """The plain engine: a :class:`~effres_core.measure.batch.BatchScorer` on this machine."""
    def score(todo: list[InputFile]) -> Iterator[dict]:
        for item in scorer.score_paths([t.path for t in todo]):
            yield result_row(item.result, item.file, todo[item.index].rel, model, settings)
    return score


def _stat(path: str) -> tuple[int | None, float | None]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime


def curate(inputs: list[InputFile], score: ScoreFn, options: CurateOptions, model: str, settings: str,
           log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Summary:
    """Run curate over ``inputs``; returns the :class:`Summary` (``interrupted`` after Ctrl-C,
    with every finished score in the manifest)."""
    t0 = time.perf_counter()
    summary = Summary(total=len(inputs))
    rules = options.rules
    fmt = format_of(options.manifest, options.manifest_format) if options.manifest else None
    resume_rows: dict[str, dict] = {}
    todo: list[InputFile] = []
    rows: dict[str, dict] = {}
    if options.resume:
        index = ResumeIndex.load(options.resume, model, settings)
        resume_rows = index.rows
        for inp in inputs:
            row = index.lookup(inp.path, *_stat(inp.path))
            if row is not None:
                rows[inp.path] = dict(row, rel=inp.rel)
            else:
                todo.append(inp)
    else:
        todo = list(inputs)
    summary.reused = len(rows)
    same_file = bool(options.resume and options.manifest
                     and os.path.abspath(options.resume) == os.path.abspath(options.manifest))
    writer = None
    if options.manifest:
        writer = ManifestWriter(options.manifest, fmt, append_to_existing=same_file)
        if not same_file:
            for row in rows.values():  # the new manifest holds the reused rows from the start
                writer.write(row)
        summary.manifest = str(writer.path)

    bar = None
    if options.progress and todo:
        from tqdm import tqdm

        # images/s always (tqdm's own rate flips to s/img below one image a second), and the ETA
        bar = tqdm(total=len(todo), unit="img", desc="effres curate", file=sys.stderr, dynamic_ncols=True,
                   smoothing=0.1, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    t_score = time.perf_counter()
    try:
        for row in score(todo):
            rows[row["path"]] = row
            if writer is not None:
                writer.write(row)
            summary.scored += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{summary.scored / max(1e-9, time.perf_counter() - t_score):.2f} images/s",
                                    refresh=False)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.scoring_seconds = time.perf_counter() - t_score
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()  # every score is on disk before any action
    if summary.interrupted:
        summary.seconds = time.perf_counter() - t0
        return summary

    ordered = [rows[i.path] for i in inputs if i.path in rows]
    decide(ordered, rules)
    claimed: dict[str, set[str]] = {}
    for row in ordered:
        action = options.kept if row["decision"] == "kept" else options.rejected if row["decision"] == "rejected" else None
        if action is None:
            row["action"] = row["destination"] = row["action_status"] = None
            continue
        dest, status = apply(action, row["path"], row["rel"], row.get("sha256"), options.dry_run,
                             claimed.setdefault(action.to, set()))
        row["action"], row["destination"], row["action_status"] = action.kind, dest, status
        if status.startswith("clash"):
            summary.clashes += 1
            log(f"effres curate: {row['path']}: not {_past(action.kind)} to {dest}: {status}")
        elif status.startswith("failed"):
            summary.action_failures += 1
            log(f"effres curate: {row['path']}: {action.kind} to {dest} {status}")
        elif options.dry_run:
            log(f"would {action.kind} {row['path']} -> {dest} ({row['decision']})")
    for row in ordered:
        summary.kept += row["decision"] == "kept"
        summary.rejected += row["decision"] == "rejected"
        summary.failed += row["decision"] == "failed"
    if writer is not None:
        final = ordered
        if same_file:  # rows of files not given this time stay in the manifest
            given = {r["path"] for r in ordered}
            final = ordered + [r for p, r in resume_rows.items() if p not in given]
        writer.finalize(final)
    summary.seconds = time.perf_counter() - t0
    return summary


def _past(kind: str) -> str:
    return {"copy": "copied", "move": "moved", "symlink": "linked", "hardlink": "linked"}[kind]

