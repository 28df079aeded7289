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
    (torch.zeros(1, 3, 64, 64, dtype=torch.int32), TypeError),
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
