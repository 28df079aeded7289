import numpy as np
import pytest
import torch
from PIL import Image

from effres_core.measure.imageio import (ImageLoadError, array_to_rgb, find_images, load_image, rgb_to_tensor,
                                 tensor_to_rgb_list)


def _gradient(h=24, w=32):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 90)], -1).astype(np.uint8)


def test_rgb_png_round_trip(tmp_path):
    rgb = _gradient()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out, rgb)


def test_grayscale(tmp_path):
    Image.fromarray(_gradient()[..., 0]).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (24, 32, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], _gradient()[..., 0])


def test_rgba_composited_over_grey(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top opaque red, bottom fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.shape == (8, 8, 3)
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[7, 7]) == (128, 128, 128)


def test_16_bit(tmp_path):
    values = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    out = load_image(tmp_path / "d.png")
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)  # monotone, not wrapped around


def test_cmyk(tmp_path):
    Image.fromarray(_gradient()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (24, 32, 3)
    assert np.abs(out.astype(int) - _gradient().astype(int)).mean() < 12


def test_exif_rotation_is_applied(tmp_path):
    rgb = _gradient(24, 32)
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (32, 24, 3)  # portrait now
    expected = np.rot90(rgb, k=-1)
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 8


def test_truncated_and_broken_files(tmp_path):
    Image.fromarray(_gradient(64, 64)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.png")
    assert issubclass(ImageLoadError, ValueError)


def test_find_images_recursive_and_sorted(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "notes.txt", "sub/c.webp", "sub/deeper/d.jpeg"):
        (tmp_path / name).write_bytes(b"")
    found = find_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.jpeg"]
    assert find_images([tmp_path / "missing.png"]) == [tmp_path / "missing.png"]  # reported later, not dropped
    assert len(find_images([tmp_path], recursive=False)) == 2


def test_array_to_rgb_dtypes():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert array_to_rgb(gray).shape == (3, 4, 3)
    assert array_to_rgb(np.full((2, 2, 3), 200, np.uint16)).max() == 200  # integers are 0..255, any dtype
    assert array_to_rgb(np.full((2, 2, 3), 200, np.int64)).max() == 200
    with pytest.raises(ValueError, match=r"0\.\.255, got values in 65535\.\.65535 \(looks like 16-bit"):
        array_to_rgb(np.full((2, 2, 3), 65535, np.uint16))
    assert array_to_rgb(np.full((2, 2, 3), 0.5, np.float32)).max() == 128
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert tuple(array_to_rgb(rgba)[0, 0]) == (128, 128, 128)
    with pytest.raises(ValueError, match="NaN"):
        array_to_rgb(np.full((2, 2, 3), np.nan))
    with pytest.raises(ValueError, match="shape"):
        array_to_rgb(np.zeros((2, 2, 5)))
    with pytest.raises(ValueError, match="dtype"):
        array_to_rgb(np.zeros((2, 2, 3), np.complex64))
    with pytest.raises(ValueError, match="boolean"):
        array_to_rgb(np.ones((2, 2, 3), bool))


def test_tensor_layouts_agree():
    x = torch.rand(2, 3, 10, 12)
    chw = tensor_to_rgb_list(x)
    hwc = tensor_to_rgb_list(x.permute(0, 2, 3, 1))  # ComfyUI layout
    assert len(chw) == len(hwc) == 2
    for a, b in zip(chw, hwc):
        assert a.shape == (10, 12, 3) and np.array_equal(a, b)
    assert np.array_equal(tensor_to_rgb_list(x[0])[0], chw[0])  # unbatched
    assert tensor_to_rgb_list(torch.rand(1, 10, 12, 1))[0].shape == (10, 12, 3)  # grey ComfyUI image


def test_tensor_errors():
    with pytest.raises(ValueError, match="NaN"):
        tensor_to_rgb_list(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        tensor_to_rgb_list(torch.rand(8, 8))
    with pytest.raises(ValueError, match="shape"):
        tensor_to_rgb_list(torch.rand(1, 1, 3, 8, 8))
    with pytest.raises(ValueError, match="channel"):
        tensor_to_rgb_list(torch.rand(1, 5, 8, 7))
    with pytest.raises(TypeError):
        tensor_to_rgb_list(np.zeros((1, 3, 8, 8)))


def test_rgb_to_tensor():
    rgb = _gradient()
    t = rgb_to_tensor(rgb)
    assert t.shape == (1, 3, 24, 32) and t.dtype == torch.float32
    assert torch.allclose(t[0].permute(1, 2, 0) * 255, torch.from_numpy(rgb).float())
    t.mul_(0)  # owns its memory: the array is untouched
    assert rgb.max() == 255
