"""Tests for effres_core.gradient.enhance: L2 PGD along the scorer's own gradient."""

import glob
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from effres_core.gradient.enhance import EnhanceResult, enhance, enhance_file
from effres_core.model.net import EffResNet

FACES = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "val" / "*.jpg"))
               or glob.glob("/work/shared/data/faces/val/*.jpg"))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EffResNet(patch_size=32, width=0.25).eval()


@pytest.fixture(scope="module")
def face():
    """A real face photo, centre-cropped and shrunk to 96x96 uint8 (a random image if none is around)."""
    if not FACES:
        return np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    from PIL import Image

    with Image.open(FACES[0]) as img:
        img = img.convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        return np.array(img.crop((left, top, left + side, top + side)).resize((96, 96), Image.BICUBIC))


class FaceModel(nn.Module):
    """Stands in for EffRes: a net plus a face mask (here: a fixed central square, 12..84 of 96)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.n_patches, self.min_foreground, self.chunk_size = net, 16, 0.9, 8

    def face_masks(self, images):
        b, _, h, w = images.shape
        m = torch.zeros(b, h, w)
        m[:, h // 8:7 * h // 8, w // 8:7 * w // 8] = 1
        return m


def test_sharpen_raises_and_soften_lowers_a_real_face(net, face):
    up = enhance(net, face, "sharpen", steps=5, n_patches=16)
    down = enhance(net, face, "soften", steps=5, n_patches=16)
    assert isinstance(up, EnhanceResult)
    assert up.raw_after[0] > up.raw_before[0] and up.after[0] > up.before[0]
    assert down.raw_after[0] < down.raw_before[0] and down.after[0] < down.before[0]
    assert up.images.dtype == np.uint8 and up.images.shape == face.shape
    assert np.abs(up.images.astype(int) - face).max() > 0


def test_change_stays_inside_the_mask_and_the_bound(net, face):
    x = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255
    mask = torch.zeros(1, 96, 96)
    mask[:, 16:80, 16:80] = 1
    out = enhance(net, x, steps=3, max_change=4.0, mask=mask, n_patches=16)
    diff = (out.images - x).abs()
    assert diff[..., ~mask[0].bool()].max() == 0
    assert diff.max() <= 4.0 / 255 + 1e-6 and diff.max() > 0
    assert out.images.min() >= 0 and out.images.max() <= 1


def test_default_mask_is_the_models_face_mask(net, face):
    model = FaceModel(net)
    out = enhance(model, face, steps=2)
    changed = np.abs(out.images.astype(int) - face).sum(axis=2) > 0
    assert changed.any() and not changed[:12].any() and not changed[:, 84:].any()
    assert out.mask is not None and out.mask.shape == (1, 96, 96)
    whole = enhance(model, face, steps=2, mask=False)
    assert whole.mask is None
    assert (np.abs(whole.images.astype(int) - face).sum(axis=2) > 0)[:12].any()


def test_empty_mask_leaves_image_unchanged(net, face):
    out = enhance(net, face, mask=np.zeros((96, 96), dtype=np.float32), n_patches=16)
    assert np.array_equal(out.images, face)
    assert torch.isnan(out.raw_before).all()


def test_batch_equals_items_one_by_one(net, face):
    x = torch.stack([torch.from_numpy(face).permute(2, 0, 1).float() / 255,
                     torch.from_numpy(face[::-1].copy()).permute(2, 0, 1).float() / 255])
    batch = enhance(net, x, steps=2, n_patches=16)
    for i in range(2):
        one = enhance(net, x[i:i + 1], steps=2, n_patches=16)
        assert torch.allclose(batch.images[i:i + 1], one.images, atol=1e-6)
        assert torch.allclose(batch.raw_after[i], one.raw_after[0])


@pytest.mark.parametrize("kind", ["float_chw", "float64_chw_unbatched", "uint8_tensor", "comfy_bhwc",
                                  "uint8_hwc", "uint8_bhwc", "float_hwc"])
def test_output_keeps_input_kind(net, face, kind):
    f = torch.from_numpy(face).float() / 255
    inputs = {
        "float_chw": f.permute(2, 0, 1)[None],
        "float64_chw_unbatched": f.permute(2, 0, 1).double(),
        "uint8_tensor": torch.from_numpy(face).permute(2, 0, 1)[None],
        "comfy_bhwc": f[None],
        "uint8_hwc": face,
        "uint8_bhwc": face[None],
        "float_hwc": f.numpy(),
    }
    x = inputs[kind]
    out = enhance(net, x, steps=1, n_patches=16).images
    assert type(out) is type(x) and out.shape == x.shape and out.dtype == x.dtype
    vals = torch.as_tensor(out)
    if vals.is_floating_point():
        assert vals.min() >= 0 and vals.max() <= 1


def test_zero_steps_is_identity(net, face):
    out = enhance(net, face, steps=0, n_patches=16)
    assert np.array_equal(out.images, face)
    assert torch.equal(out.before, out.after)


def test_leaves_a_training_net_in_training_mode(face):
    torch.manual_seed(0)
    net = EffResNet(patch_size=32, width=0.25).train()
    enhance(net, face, steps=1, n_patches=16)
    assert net.training


@pytest.mark.parametrize("kwargs, err", [
    ({"direction": "up"}, ValueError),
    ({"steps": -1}, ValueError),
    ({"max_change": 0}, ValueError),
    ({"step_per": "pixel"}, ValueError),
    ({"mask": "face"}, TypeError),
])
def test_bad_settings(net, face, kwargs, err):
    with pytest.raises(err):
        enhance(net, face, **kwargs)


@pytest.mark.parametrize("bad, err", [
    (torch.rand(1, 3, 64, 64) * 2, ValueError),  # outside [0, 1]
    (torch.rand(1, 4, 64, 5), ValueError),
    (np.zeros((64, 64), dtype=np.uint8), ValueError),
    ("face.jpg", TypeError),
    (torch.zeros(1, 3, 64, 64, dtype=torch.bool), ValueError),  # the scorer's value rule
    (torch.full((1, 3, 64, 64), 300, dtype=torch.int32), ValueError),
    (torch.full((1, 3, 64, 64), float("nan")), ValueError),
    (np.full((64, 64, 3), 255.0, np.float32), ValueError),
])
def test_bad_images(net, bad, err):
    with pytest.raises(err):
        enhance(net, bad)


def test_enhance_file_and_cli(tmp_path, net, face):
    from PIL import Image

    Image.fromarray(face).save(tmp_path / "in.png")
    result = enhance_file(tmp_path / "in.png", tmp_path / "out.png", net, steps=2, n_patches=16)
    written = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(written, result.images)

    pytest.importorskip("effres_core.measure.scorer")
    from effres_core.cli import enhance as cli
    from effres_core.model.hub import save_pretrained

    save_pretrained(net, tmp_path / "model")
    parser = __import__("argparse").ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["enhance", str(tmp_path / "in.png"), str(tmp_path / "cli.png"), "--no-mask",
                              "--steps", "2", "--model", str(tmp_path / "model"), "--device", "cpu"])
    assert args.run(args) == 0
    assert (tmp_path / "cli.png").is_file()


def test_cli_missing_model_is_a_message_not_a_traceback(tmp_path, face, capsys):
    from PIL import Image

    from effres_core.cli import main

    Image.fromarray(face).save(tmp_path / "in.png")
    code = main(["enhance", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", str(tmp_path / "nope")])
    assert code == 2 and not (tmp_path / "out.png").exists()
    assert "effres enhance: cannot find model" in capsys.readouterr().err


def test_package_export_is_callable_in_any_import_order(net, face):
    import effres_core  # noqa: F401
    import effres_core.gradient.enhance  # noqa: F401  (binds the package attribute to the module)
    from effres_core import enhance as exported
    from effres_core.gradient import enhance as from_package

    assert from_package is exported
    out = exported(net, face, steps=1, n_patches=16)
    assert isinstance(out, EnhanceResult)


# ---- the honest enhancer: same regions, grid-independent gain, filtered steps ---------------------

def _effres(net, **kw):
    from effres_core.measure.scorer import EffRes

    return EffRes(net, device="cpu", **{"detector": "whole", "masker": "none", "n_patches": 16, **kw})


@pytest.mark.parametrize("kind", ["uint8_hwc", "float_chw", "comfy_bhwc_batch"])
def test_before_and_after_are_what_effres_score_says(net, face, kind):
    model = _effres(net)
    f = torch.from_numpy(face).float() / 255
    x = {"uint8_hwc": face, "float_chw": f.permute(2, 0, 1)[None],
         "comfy_bhwc_batch": torch.stack([f, f.flip(1)])}[kind]
    out = enhance(model, x, steps=3)
    scored_in, scored_out = model.score(x), model.score(out.images)
    scored_in = scored_in if isinstance(scored_in, list) else [scored_in]
    scored_out = scored_out if isinstance(scored_out, list) else [scored_out]
    assert out.after.tolist() == pytest.approx([r.ratio for r in scored_out], abs=0.01)
    assert out.before.tolist() == pytest.approx([r.ratio for r in scored_in], abs=0.01)
    assert all(a > b for a, b in zip(out.after.tolist(), out.before.tolist()))


def test_enhance_file_reports_the_written_files_score(tmp_path, net, face):
    from PIL import Image

    model = _effres(net)
    Image.fromarray(face).save(tmp_path / "in.png")
    for name in ("out.png", "out.jpg"):  # JPEG loses some of the change: after is the file's score
        result = enhance_file(tmp_path / "in.png", tmp_path / name, model, steps=3)
        assert float(result.after[0]) == pytest.approx(model.score(tmp_path / name).ratio, abs=0.01)
        assert float(result.before[0]) == pytest.approx(model.score(tmp_path / "in.png").ratio, abs=1e-6)


def test_only_the_scorers_face_crop_changes(net):
    from conftest import face_like_image
    from effres_core.measure.faces import FaceBox

    class CropScorer(type(_effres(net))):
        """Finds one face, 40..104 x 30..110 of a 128 px image (the crop is the box: detector whole)."""

        def _faces(self, rgb):
            box = FaceBox(40, 30, 104, 110)
            yield box, box, np.ones((box.height, box.width), np.float32)

    model = CropScorer(net, detector="whole", masker="none", device="cpu", n_patches=16)
    img = face_like_image(size=128)
    out = enhance(model, img, steps=2)
    changed = np.abs(out.images.astype(int) - img).sum(axis=2) > 0
    assert changed[30:110, 40:104].any()
    assert not changed[:30].any() and not changed[110:].any() and not changed[:, :40].any() and not changed[:, 104:].any()
    assert out.mask is not None and out.mask[0, 30:110, 40:104].min() == 1 and out.mask.sum() == 80 * 64


def test_shifted_grids_cover_every_offset_and_stay_in_the_crop():
    from effres_core.gradient.enhance import _PatchPlan, _Region

    mask = torch.zeros(80, 100)
    mask[10:70, 10:90] = 1
    plan = _PatchPlan([_Region(20, 30, 80, 100, mask)], patch_size=32, n_patches=16, min_foreground=0.9, seed=0)
    [(region, fixed)] = plan.groups()
    assert region is None  # unscaled regions share one group, in image coordinates
    assert fixed and all(30 <= x0 and x1 <= 130 and 20 <= y0 and y1 <= 100 for x0, y0, x1, y1 in fixed)
    draws = [b for group in (plan.groups(shifted=True) for _ in range(40)) for _, b in group]
    offsets = {(b[0][0] - 30, b[0][1] - 20) for b in draws if b}
    assert len(offsets) > 10  # many grid phases, not one
    for boxes in draws:
        for x0, y0, x1, y1 in boxes:
            assert x1 - x0 == y1 - y0 == 32
            assert mask[y0 - 20:y1 - 20, x0 - 30:x1 - 30].mean() >= 0.9  # only mostly-face patches
    same = _PatchPlan([_Region(20, 30, 80, 100, mask)], 32, 16, 0.9, seed=0)
    assert [b for group in (same.groups(shifted=True) for _ in range(40)) for _, b in group] == draws  # seeded


def test_an_upscaled_region_has_its_own_group_on_the_upscaled_grid():
    from effres_core.gradient.enhance import _PatchPlan, _Region

    small = _Region(4, 6, 20, 24, torch.ones(20, 24), scale=2.0)  # scored as 40x48
    plan = _PatchPlan([small, _Region(0, 0, 64, 64, None)], patch_size=32, n_patches=4, min_foreground=0.9, seed=0)
    groups = plan.groups()
    assert [g[0] is None for g in groups] == [True, False]
    region, boxes = groups[1]
    assert region is small and boxes and all(0 <= x0 and x1 <= 48 and 0 <= y0 and y1 <= 40 for x0, y0, x1, y1 in boxes)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    up = small.pixels(x, 32)
    assert up.shape == (1, 3, 40, 48)
    up.sum().backward()  # differentiable back to the image, and only inside the crop
    assert x.grad[..., 4:24, 6:30].abs().sum() > 0 and x.grad[..., 30:, :].abs().sum() == 0


def test_faces_smaller_than_a_patch_are_enhanced_like_the_scorer_scores_them(net):
    """A 24 px face crop with 32 px patches: the scorer upscales it to one patch (k = 4/3) and scores
    k * patch score; the enhancer optimises that same quantity instead of leaving the face alone."""
    from effres_core.measure.faces import FaceBox

    class SmallFaceScorer(type(_effres(net))):
        def _faces(self, rgb):
            box = FaceBox(20, 20, 44, 44)
            yield box, box, np.ones((box.height, box.width), np.float32)

    model = SmallFaceScorer(net, detector="whole", masker="none", device="cpu", n_patches=4, min_face_size=16)
    img = np.random.default_rng(3).integers(60, 200, (64, 64, 3), dtype=np.uint8)
    assert model.score(img).faces[0].upscale == pytest.approx(32 / 24, abs=0.01)
    out = enhance(model, img, steps=3, step_size=200.0)
    changed = np.abs(out.images.astype(int) - img).sum(axis=2) > 0
    assert changed[20:44, 20:44].any() and not changed[:20].any() and not changed[44:].any()
    assert float(out.after[0]) == pytest.approx(model.score(out.images).ratio, abs=0.01)
    assert float(out.raw_after[0]) > float(out.raw_before[0]) and float(out.after[0]) > float(out.before[0])


def test_seed_repeats_and_jitter_changes_the_path(net, face):
    model = _effres(net)
    a, b = enhance(model, face, steps=3, seed=1), enhance(model, face, steps=3, seed=1)
    assert np.array_equal(a.images, b.images)
    fixed = enhance(model, face, steps=3, jitter=False)
    assert not np.array_equal(a.images, fixed.images)


def test_filter_step():
    from effres_core.gradient.enhance import filter_step, gaussian_blur

    g = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = filter_step(g)
    assert out.shape == g.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])  # brightness only
    assert not torch.equal(filter_step(g, colour=True)[:, 0], filter_step(g, colour=True)[:, 1])
    tone = torch.ones(1, 3, 64, 64)  # a flat brightening is tone, not detail: high-passed away
    assert filter_step(tone).abs().max() < 1e-5
    assert filter_step(tone, highpass=None).abs().min() > 0.99
    rough = lambda t: (t[..., 1:] - t[..., :-1]).pow(2).mean()  # noqa: E731
    assert rough(filter_step(g, highpass=None, colour=True)) < 0.2 * rough(g)  # the blur removes ripple
    assert torch.equal(filter_step(g, smooth=0, highpass=None, colour=True), g)
    assert torch.allclose(gaussian_blur(torch.ones(1, 1, 5, 5), 3.0), torch.ones(1, 1, 5, 5))  # tiny image
    with pytest.raises(ValueError, match="gradient"):
        filter_step(torch.zeros(1, 1, 8, 8))


def test_integer_inputs_keep_their_dtype(net, face):
    x = torch.from_numpy(face).long().permute(2, 0, 1)[None]
    out = enhance(net, x, steps=1, n_patches=16).images
    assert out.dtype == torch.int64 and out.shape == x.shape and 0 <= out.min() and out.max() <= 255


@pytest.mark.integration
def test_default_model_after_is_effres_score_of_the_saved_file(real_face_path, tmp_path):
    """The bundled model on a real 512 px photo (Haar face, ellipse mask): what the enhancer
    reports is what scoring the written file gives, and sharpening raises it."""
    from effres_core.measure.scorer import EffRes

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model = EffRes.from_pretrained(device="cpu", detector="haar", masker="ellipse", n_patches=25)  # fast
    result = enhance_file(real_face_path, tmp_path / "out.png", model, steps=2)
    assert float(result.after[0]) == pytest.approx(model.score(tmp_path / "out.png").ratio, abs=0.01)
    assert float(result.before[0]) == pytest.approx(model.score(real_face_path).ratio, abs=1e-6)
    assert result.after[0] > result.before[0] and result.raw_after[0] > result.raw_before[0]


def test_score_after_false_skips_scoring_the_output(face):
    from effres_core.measure.scorer import EffRes

    from conftest import make_tiny_net

    model = EffRes(make_tiny_net(), device="cpu", detector="whole", masker="none", n_patches=4)
    out = enhance(model, face, steps=1, score_after=False)
    assert torch.isnan(out.after).all() and torch.isfinite(out.before).all()
