"""Acting on decisions: copy, move, symlink or hardlink files into a folder, keeping their relative
path. Never deletes a file (a move removes the source only once the destination holds the file),
never overwrites one: an existing destination with other content, or two inputs with the same
relative path, is a clash and is reported. An existing destination with the same content counts
as done, so a run that is resumed after a kill does not redo or report its earlier actions."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from dataclasses import dataclass

ACTIONS = ("copy", "move", "symlink", "hardlink")


@dataclass(frozen=True)
class Action:
    """``kind`` (one of :data:`ACTIONS`) into folder ``to``."""

    kind: str
    to: str

    def __post_init__(self):
        if self.kind not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.kind!r}")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _already_there(kind: str, src: str, dest: str, sha256: str | None) -> bool:
    """True when ``dest`` already is what the action would make (an earlier, interrupted run)."""
    if kind == "symlink":
        return os.path.islink(dest) and os.path.realpath(dest) == os.path.realpath(src)
    if kind == "hardlink":
        try:
            return os.path.samefile(src, dest)
        except OSError:
            return False
    if not os.path.isfile(dest) or sha256 is None:
        return False
    try:
        return file_sha256(dest) == sha256
    except OSError:
        return False


def _copy_exclusive(src: str, dest: str) -> None:
    """Copy ``src`` to a new file ``dest`` (fails if it exists), with its times; a half-written
    ``dest`` (our own) is removed again on failure."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
        shutil.copystat(src, dest)
    except BaseException:
        os.unlink(dest)
        raise


def _finish_move(src: str) -> str:
    """Remove the source of a move whose destination already holds the same bytes."""
    try:
        os.unlink(src)
    except OSError as err:
        return f"failed: {err.strerror or err}"
    return "done"


def apply(action: Action, src: str, rel: str, sha256: str | None = None, dry_run: bool = False,
          claimed: set[str] | None = None) -> tuple[str, str]:
    """Do ``action`` for one file; returns ``(destination, status)`` with status ``done``,
    ``exists`` (already done earlier), ``dry-run``, ``clash: ...`` or ``failed: ...``.
    ``claimed``: destinations taken earlier in this run (a second input with the same relative
    path is a clash)."""
    dest = os.path.join(action.to, rel)
    key = os.path.normcase(os.path.abspath(dest))
    if claimed is not None:
        if key in claimed:
            return dest, "clash: another input has the same relative path"
        claimed.add(key)
    if os.path.lexists(dest):
        if _already_there(action.kind, src, dest, sha256):
            if action.kind == "move" and os.path.exists(src) and not dry_run:
                return dest, _finish_move(src)  # killed between link and unlink: the copy is there
            return dest, "exists"
        return dest, "clash: the destination exists with other content"
    if action.kind == "move" and not os.path.exists(src):
        return dest, "failed: the source is gone"
    if dry_run:
        return dest, "dry-run"
    try:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        if action.kind == "copy":
            _copy_exclusive(src, dest)
        elif action.kind == "symlink":
            os.symlink(os.path.abspath(src), dest)
        elif action.kind == "hardlink":
            os.link(src, dest)
        else:  # move: link (never overwrites) then unlink; across filesystems copy then unlink
            try:
                os.link(src, dest)
            except OSError as err:
                if err.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                    raise
                _copy_exclusive(src, dest)
            if os.path.getsize(dest) != os.path.getsize(src):
                raise OSError(f"{dest} does not match {src} after the copy; the source was kept")
            os.unlink(src)
    except FileExistsError:
        return dest, "clash: the destination appeared during the run"
    except OSError as err:
        return dest, f"failed: {err.strerror or err}"
    return dest, "done"
