"""measure.batch: BatchScorer gives score_rgb's results (order, errors, ratios) with pooled forward passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import face_like_image, make_tiny_net
from effres_core.measure.batch import BatchScorer, PatchPool, accelerate_for_cpu, read_file
from effres_core.measure.imageio import decode_image_bytes
from effres_core.measure.imageio import ImageLoadError, load_image
from effres_core.measure.scorer import EffRes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "faces"


def tiny_model(**kw) -> EffRes:
    return EffRes(make_tiny_net(), device="cpu", **{"detector": "whole", "masker": "ellipse", **kw})


@pytest.fixture
def image_files(tmp_path) -> list[Path]:
    """Faces of several sizes, a truncated file and a text file in the middle."""
    files = []
    for i, size in enumerate((64, 96, 160, 40)):
        p = tmp_path / f"face{i}.png"
        Image.fromarray(face_like_image(size, seed=i)).save(p)
        files.append(p)
    broken = tmp_path / "broken.png"
    broken.write_bytes(files[2].read_bytes()[:200])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    return files[:2] + [broken] + files[2:3] + [text, tmp_path / "missing.png"] + files[3:]


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_same_results_as_one_image_at_a_time_in_input_order(image_files, workers):
    model = tiny_model()
    batch = BatchScorer(model, workers=workers, batch_size=7, accelerate=False)
    items = list(batch.score_paths(image_files))
    assert [it.index for it in items] == list(range(len(image_files)))
    for path, item in zip(image_files, items):
        assert item.result.path == str(path)
        try:
            ref = model.score_rgb(load_image(path), path=str(path))
        except ImageLoadError:
            assert item.result.error and item.result.ratio is None
            continue
        assert item.result.error is None
        assert item.result.reason == ref.reason
        if ref.ratio is None:
            assert item.result.ratio is None
        else:
            assert item.result.ratio == pytest.approx(ref.ratio, abs=1e-4)
            assert [f.patches_used for f in item.result.faces] == [f.patches_used for f in ref.faces]
            np.testing.assert_allclose(item.result.heatmap, ref.heatmap, atol=1e-4)


def test_errors_are_per_file(image_files):
    items = list(BatchScorer(tiny_model(), workers=2, accelerate=False).score_paths(image_files))
    errors = {Path(it.result.path).name: it.result.error for it in items}
    assert "truncated" in errors["broken.png"] or "cannot decode" in errors["broken.png"]
    assert "not an image" in errors["notes.jpg"]
    assert "no such file" in errors["missing.png"]
    assert errors["face0.png"] is None and errors["face3.png"] is None  # the batch went on


def test_read_file_hashes_and_stats_once(image_files):
    import hashlib

    f = read_file(image_files[0])
    assert f.sha256 == hashlib.sha256(image_files[0].read_bytes()).hexdigest()
    assert f.size == image_files[0].stat().st_size and f.mtime == image_files[0].stat().st_mtime
    assert f.rgb.shape == (64, 64, 3) and f.error is None
    with pytest.raises(ImageLoadError, match="not an image"):
        decode_image_bytes(b"hello", "x")


def test_pool_puts_patches_of_several_images_in_one_pass():
    model = tiny_model()
    images = [face_like_image(96, seed=i) for i in range(6)]
    seen = []
    net = model.inference_net

    def counting(x):
        seen.append(x.shape[0])
        return net(x)

    scorer = BatchScorer(model, workers=3, batch_size=256, accelerate=False)
    scorer._net = lambda n: (counting, False)  # observe the passes
    pooled = list(scorer.score_arrays(images))
    per_image = sum(sum(f.patches_used for f in model.score_rgb(img).faces) for img in images)
    assert all(n == 256 for n in seen)  # one shape: short passes are padded
    assert len(seen) < len(images)  # several images shared a pass (100 patches each)
    assert sum(f.patches_used for it in pooled for f in it.result.faces) == per_image


def test_a_failing_forward_pass_fails_only_its_images():
    model = tiny_model()
    calls = {"n": 0}
    net = model.inference_net

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory")
        return net(x)

    scorer = BatchScorer(model, workers=0, batch_size=16, accelerate=False)
    scorer._net = lambda n: (flaky, False)
    items = list(scorer.score_arrays([face_like_image(96, seed=i) for i in range(3)]))
    assert "out of memory" in items[0].result.error
    assert items[1].result.error is None and items[1].result.ratio is not None


def test_pool_rejects_bad_settings():
    with pytest.raises(ValueError, match="batch_size"):
        PatchPool(torch.nn.Identity(), 32, 0, torch.device("cpu"))
    with pytest.raises(ValueError, match="batch_size"):
        BatchScorer(tiny_model(), batch_size=0)  # not taken as "the default"
    with pytest.raises(ValueError, match="precision"):
        BatchScorer(tiny_model(), precision="int8")
    with pytest.raises(ValueError, match="workers"):
        BatchScorer(tiny_model(), workers=-1)


def test_accelerated_net_matches_eager():
    net = tiny_model().inference_net
    fast = accelerate_for_cpu(net, 32, 8)
    if fast is None:
        pytest.skip("TorchScript/oneDNN not available in this torch build")
    x = torch.rand(8, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(fast(x), net(x), atol=1e-4)


def test_score_accepts_what_effres_score_accepts(image_files):
    model = tiny_model()
    arr = face_like_image(96)
    out = BatchScorer(model, workers=2, accelerate=False).score([arr, str(image_files[0]), torch.rand(2, 3, 64, 64)])
    assert len(out) == 4
    assert out[0].ratio == pytest.approx(model.score_rgb(arr).ratio, abs=1e-4)
    assert out[1].path == str(image_files[0])


def test_haar_in_threads_finds_what_one_thread_finds():
    """Haar cascades are per thread: detecting in parallel gives the serial boxes."""
    paths = sorted(EXAMPLES.glob("*.jpg"))
    model = EffRes(make_tiny_net(), device="cpu", detector="haar", masker="ellipse")
    serial = [model.score_rgb(load_image(p)) for p in paths]
    threaded = list(BatchScorer(model, workers=4, accelerate=False).score_paths(paths * 2))
    for ref, item in zip(serial * 2, threaded):
        assert [f.box for f in item.result.faces] == [f.box for f in ref.faces]
        assert item.result.ratio == pytest.approx(ref.ratio, abs=1e-4)
