"""Each face's result carries its patch count and the spread (IQR) of its patch scores, and says
when that makes the score unreliable; the CLI prints and tabulates both."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from effres_core.cli import main as run_cli
from effres_core.measure import reliability
from effres_core.measure.scorer import EffRes, FaceScore, ScoreResult, interquartile_range

from conftest import make_tiny_net


def _scorer(**kw):
    return EffRes(make_tiny_net(), detector="whole", masker="none", device="cpu", **kw)


def test_interquartile_range():
    assert interquartile_range(torch.tensor([0.5])) == 0.0
    assert interquartile_range(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        interquartile_range(torch.tensor([]))


def test_face_iqr_is_the_spread_of_the_kept_patch_scores(face_rgb):
    model = _scorer(n_patches=30)
    result = model.score(face_rgb)
    (face,) = result.faces
    # The heatmap holds each kept patch's clipped score over its area; recompute from the patches.
    x = torch.from_numpy(face_rgb).permute(2, 0, 1)[None].float() / 255
    from effres_core.measure.scoring import patch_scores

    scores, _ = patch_scores(model.inference_net, x, n_patches=30)
    kept = scores[0][~torch.isnan(scores[0])].clamp(0, 1)
    q25, q75 = np.quantile(kept.numpy(), [0.25, 0.75])
    assert face.patches_used == kept.numel() > 1
    assert face.patch_iqr == pytest.approx(q75 - q25, abs=1e-6)
    d = face.to_dict()
    assert d["patch_iqr"] == face.patch_iqr and d["patches_used"] == face.patches_used
    json.dumps(result.to_dict())


def test_unscored_faces_have_no_spread(face_rgb):
    small = face_rgb[:20, :20]
    (face,) = _scorer().score(small).faces
    assert face.ratio is None and face.patch_iqr is None and face.patches_used == 0
    assert reliability.face_warning(face) is None


def test_warnings_follow_the_thresholds():
    ok = FaceScore([0, 0, 9, 9], 0.8, reliability.MIN_PATCHES, patch_iqr=reliability.MAX_PATCH_IQR)
    few = FaceScore([0, 0, 9, 9], 0.8, reliability.MIN_PATCHES - 1, patch_iqr=0.01)
    wide = FaceScore([0, 0, 9, 9], 0.8, 50, patch_iqr=reliability.MAX_PATCH_IQR + 0.01)
    assert reliability.face_warning(ok) is None
    assert "patch" in reliability.face_warning(few) and "IQR" in reliability.face_warning(wide)
    result = ScoreResult(ratio=0.8, faces=[ok, wide])
    assert "IQR" in reliability.score_warning(result)
    assert reliability.score_warning(ScoreResult(ratio=0.8, faces=[ok])) is None


@pytest.fixture
def one_image(tmp_path, face_rgb):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(face_rgb).save(path)
    model_dir = tmp_path / "model"
    make_tiny_net().eval()
    from effres_core.model import hub

    hub.save_pretrained(make_tiny_net(), model_dir)
    return path, model_dir


def test_cli_line_json_and_csv_carry_count_and_spread(one_image, tmp_path, capsys):
    path, model_dir = one_image
    common = ["--model", str(model_dir), "--detector", "whole", "--masker", "none", "--quiet"]
    assert run_cli(["score", str(path), *common]) == 0
    line = capsys.readouterr().out.strip()
    assert " patches, patch IQR " in line
    assert run_cli(["score", str(path), "--json", *common]) == 0
    face = json.loads(capsys.readouterr().out)[0]["faces"][0]
    assert face["patches_used"] > 0 and 0 <= face["patch_iqr"] <= 1
    table = tmp_path / "s.csv"
    assert run_cli(["score", str(path), "--csv", str(table), *common]) == 0
    (row,) = list(csv.DictReader(table.open()))
    assert int(row["patches"]) == face["patches_used"]
    assert float(row["patch_iqr"]) == pytest.approx(face["patch_iqr"], abs=1e-6)
    # One patch only: the line says so.
    assert run_cli(["score", str(path), "--patches", "1", *common]) == 0
    assert "(unreliable: only" in capsys.readouterr().out
