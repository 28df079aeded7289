import json

import numpy as np
import pytest
import torch
from PIL import Image

from effres_core.measure.scorer import EffRes, FaceScore, ScoreResult
from effres_core.measure.scoring import effective_resolution_ratio

from conftest import face_like_image, make_tiny_net, randomise_batchnorm

RESULT_KEYS = {"path", "ratio", "effective_resolution", "faces", "detector", "masker", "reason", "error"}


def _scorer(detector="whole", masker="none", **kw):
    return EffRes(make_tiny_net(), detector=detector, masker=masker, device="cpu", **kw)


def test_result_schema(face_rgb):
    result = _scorer().score(face_rgb)
    assert isinstance(result, ScoreResult)
    d = result.to_dict()
    assert set(d) == RESULT_KEYS
    json.dumps(d)  # JSON-ready, no numpy types
    assert 0.0 <= d["ratio"] <= 1.0 and d["error"] is None and d["reason"] is None
    h, w = face_rgb.shape[:2]
    assert d["effective_resolution"] == [round(d["ratio"] * h), round(d["ratio"] * w)]
    assert (d["detector"], d["masker"]) == ("whole", "none")
    (face,) = d["faces"]
    assert set(face) >= {"box", "ratio", "patches_used"} and face["box"] == [0, 0, w, h]
    assert face["patches_used"] > 0 and isinstance(result.faces[0], FaceScore)
    assert result.image_size == (h, w)
    assert result.heatmap.shape == result.mask.shape == (h, w)
    assert np.nanmin(result.heatmap) >= 0 and np.nanmax(result.heatmap) <= 1


def test_every_input_kind_gives_the_same_score(tmp_path, face_rgb):
    model = _scorer()
    Image.fromarray(face_rgb).save(tmp_path / "f.png")
    chw = torch.from_numpy(face_rgb).permute(2, 0, 1)[None].float() / 255
    inputs = {
        "path": tmp_path / "f.png",
        "str path": str(tmp_path / "f.png"),
        "PIL": Image.fromarray(face_rgb),
        "array": face_rgb,
        "unbatched tensor": chw[0],
    }
    reference = model.score(face_rgb).ratio
    for kind, item in inputs.items():
        result = model.score(item)
        assert isinstance(result, ScoreResult), kind
        assert result.ratio == pytest.approx(reference, abs=1e-6), kind
    assert model.score(tmp_path / "f.png").path == str(tmp_path / "f.png")
    for batch in (chw.repeat(2, 1, 1, 1), chw.permute(0, 2, 3, 1).repeat(2, 1, 1, 1)):  # [B,3,H,W], ComfyUI
        results = model.score(batch)
        assert isinstance(results, list) and len(results) == 2
        assert all(r.ratio == pytest.approx(reference, abs=1e-6) for r in results)


def test_a_list_scores_a_batch(tmp_path, face_rgb):
    model = _scorer()
    results = model.score([face_rgb, Image.fromarray(face_like_image(seed=1)), tmp_path / "missing.png"])
    assert len(results) == 3
    assert results[0].ratio is not None and results[1].ratio is not None
    assert results[2].error and "no such file" in results[2].error and results[2].ratio is None
    assert model.score([]) == []


def test_bad_input_never_a_silent_zero(tmp_path):
    model = _scorer()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = model.score(tmp_path / "broken.jpg")
    assert result.error and result.ratio is None and result.effective_resolution is None
    assert model.score(np.full((40, 40, 3), np.nan, np.float32)).error
    assert "shape" in model.score(np.zeros((40, 40, 7), np.uint8)).error
    with pytest.raises(TypeError, match="cannot score"):
        model._to_rgb_list(3.5)
    batch = model.score(torch.full((2, 3, 40, 40), float("nan")))  # a batch: one error entry per image
    assert len(batch) == 2 and all("NaN" in r.error and r.ratio is None for r in batch)


def test_tiny_face_reason_names_the_floor():
    result = _scorer().score(face_like_image(size=40))  # under the 48 px floor
    assert result.ratio is None and result.effective_resolution is None
    assert "smaller than the 48 px floor" in result.reason
    assert result.faces[0].ratio is None and result.faces[0].patches_used == 0


def test_no_face_reason_with_haar():
    result = _scorer(detector="haar", masker="ellipse").score(np.full((160, 200, 3), 127, np.uint8))
    assert result.ratio is None and result.faces == [] and result.reason == "no face found"
    assert result.detector == "haar" and np.isnan(result.heatmap).all()


def test_all_background_reason(face_rgb):
    model = _scorer(masker="none", min_foreground=1.01)  # no patch can pass
    result = model.score(face_rgb)
    assert result.ratio is None and "background" in result.reason


def test_real_face_with_haar(real_face_path):
    result = _scorer(detector="haar", masker="ellipse").score(real_face_path)
    assert result.error is None and result.ratio is not None, result.reason
    assert len(result.faces) >= 1 and result.faces[0].patches_used > 0
    x0, y0, x1, y1 = result.faces[0].box
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512 and (x1 - x0) > 100
    # Scores only where the face mask is: NaN far from the face, mask non-zero where scored.
    scored = ~np.isnan(result.heatmap)
    assert scored.any() and not scored.all()
    assert (result.mask[scored] > 0).mean() > 0.85


def test_huge_image_is_scored_in_bounded_chunks():
    net = make_tiny_net()
    sizes = []
    net.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    model = EffRes(net, detector="whole", masker="none", device="cpu", chunk_size=16)
    rgb = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    result = model.score(rgb)
    assert result.ratio is not None and result.image_size == (3000, 4000)
    assert max(sizes) <= 16 and 80 <= sum(sizes) <= 120  # ~100 patches, never all at once
    assert result.faces[0].patches_used == sum(sizes)


def test_ratio_is_the_differentiable_path():
    net = randomise_batchnorm(make_tiny_net())  # the pipeline runs a BatchNorm-folded copy
    model = EffRes(net, detector="whole", masker="none", device="cpu", n_patches=9)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    y = model.ratio(x)
    assert torch.allclose(y, effective_resolution_ratio(net, x, n_patches=9), atol=1e-6)
    (grad,) = torch.autograd.grad(y.sum(), x)
    (expected,) = torch.autograd.grad(effective_resolution_ratio(net, x, n_patches=9).sum(), x)
    assert grad.abs().sum() > 0 and torch.allclose(grad, expected, atol=1e-6)
    assert all(not p.requires_grad for p in model.net.parameters())  # frozen scorer


def test_face_masks():
    model = _scorer(detector="whole", masker="none")
    masks = model.face_masks(torch.rand(2, 3, 40, 48))
    assert masks.shape == (2, 40, 48) and torch.all(masks == 1)
    with pytest.raises(ValueError, match="one size"):
        model.face_masks([np.zeros((40, 40, 3), np.uint8), np.zeros((50, 40, 3), np.uint8)])


def test_from_pretrained_folder(tiny_model_dir, face_rgb):
    model = EffRes.from_pretrained(tiny_model_dir, device="cpu", detector="whole", masker="none")
    assert model.device.type == "cpu" and model.patch_size == 32
    assert model.score(face_rgb).ratio == pytest.approx(_scorer().score(face_rgb).ratio, abs=1e-6)


def test_unknown_detector_or_masker():
    with pytest.raises(ValueError, match="detector"):
        _scorer(detector="yolo").score(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="masker"):
        _scorer(masker="sam").score(np.zeros((64, 64, 3), np.uint8))
