import numpy as np
import pytest
import torch
from PIL import Image

from effres_core.synthesis.degradations import KERNELS, Resize, degrade, resize_antialiased, resize_matrix

#: Our kernels that Pillow implements the same way (Pillow's LANCZOS is lanczos3, BOX is area).
PILLOW = {"area": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
          "lanczos3": Image.LANCZOS, "nearest": Image.NEAREST}
SIZES = [((48, 64), (16, 20)), ((48, 64), (37, 23)), ((30, 40), (60, 80)), ((17, 25), (40, 31))]


def _pillow_resize(img: np.ndarray, size, kernel) -> np.ndarray:
    return np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((size[1], size[0]), PILLOW[kernel]))


@pytest.mark.parametrize("kernel", sorted(PILLOW))
@pytest.mark.parametrize("in_size,out_size", SIZES)
def test_matches_pillow_float(kernel, in_size, out_size):
    rng = np.random.default_rng(0)
    img = rng.random(in_size).astype(np.float32)
    ours = resize_antialiased(torch.from_numpy(img).double(), out_size, kernel).numpy()
    ref = _pillow_resize(img, out_size, kernel)
    assert ours.shape == ref.shape == out_size
    if kernel == "nearest":
        # Where an output centre falls exactly on an input pixel border, we take the pixel after it
        # (floor of the exact coordinate, as TensorFlow does); Pillow's float arithmetic may land
        # on either side. Compare everything else.
        rows, cols = (~_ties(in_size[0], out_size[0]), ~_ties(in_size[1], out_size[1]))
        ours, ref = ours[rows][:, cols], ref[rows][:, cols]
        assert ours.size >= 0.5 * out_size[0] * out_size[1]
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def _ties(in_size: int, out_size: int) -> np.ndarray:
    """Output indices whose centre (i + 0.5) * in / out is a whole input coordinate."""
    return ((2 * np.arange(out_size) + 1) * in_size) % (2 * out_size) == 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_constant_stays_constant(kernel):
    x = torch.full((1, 3, 40, 30), 0.37)
    for size in ((13, 11), (40, 30), (97, 64)):
        assert torch.allclose(resize_antialiased(x, size, kernel), torch.full((1, 3, *size), 0.37), atol=1e-6)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("sizes", [(50, 17), (17, 50), (33, 33)])
def test_rows_sum_to_one(kernel, sizes):
    m = resize_matrix(*sizes, kernel, dtype=torch.float64)
    assert m.shape == (sizes[1], sizes[0])
    assert torch.allclose(m.sum(1), torch.ones(sizes[1], dtype=torch.float64))


@pytest.mark.parametrize("kernel", KERNELS)
def test_symmetric_flip_commutes(kernel):
    # Symmetric kernels on a centred sampling grid: flipping before or after gives the same.
    # Box-shaped kernels (area, nearest) break exact ties one way, so for them pick sizes whose
    # taps never sit exactly on a kernel edge (integer down/up factors).
    x = torch.rand(2, 3, 42, 36, dtype=torch.float64)
    sizes = ((14, 12), (84, 108)) if kernel in ("area", "nearest") else ((13, 20), (80, 55))
    for size in sizes:
        a = resize_antialiased(x.flip(-1, -2), size, kernel)
        b = resize_antialiased(x, size, kernel).flip(-1, -2)
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradcheck(kernel):
    x = torch.rand(1, 2, 9, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: resize_antialiased(t, (5, 11), kernel), (x,))


def test_shapes_dtype_and_module():
    x = torch.rand(2, 3, 32, 24)
    out = resize_antialiased(x, (8, 6), "lanczos5")
    assert out.shape == (2, 3, 8, 6) and out.dtype == torch.float32
    assert torch.equal(Resize((8, 6), "lanczos5")(x), out)
    assert resize_antialiased(torch.rand(32, 24), (8, 6)).shape == (8, 6)  # plain [H, W]
    nc = torch.rand(2, 32, 24, 3).permute(0, 3, 1, 2)
    assert torch.allclose(resize_antialiased(nc, (8, 6)), resize_antialiased(nc.contiguous(), (8, 6)))
    assert resize_antialiased(x, (32, 24)) is x  # no-op


def test_area_downscale_is_block_mean():
    x = torch.rand(1, 1, 8, 12)
    out = resize_antialiased(x, (4, 4), "area")
    assert torch.allclose(out, x.view(1, 1, 4, 2, 4, 3).mean(dim=(3, 5)), atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="kernel"):
        resize_antialiased(torch.rand(1, 1, 8, 8), (4, 4), "hamming")
    with pytest.raises(TypeError):
        resize_antialiased(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), (4, 4))
    with pytest.raises(ValueError):
        resize_antialiased(torch.rand(8), (4, 4))
    with pytest.raises(ValueError, match="positive"):
        resize_matrix(8, 0, "bicubic")


@pytest.mark.parametrize("factor", [0.25, 0.5, 0.73, 1.0])
def test_degrade_reports_true_factor(factor):
    x = torch.rand(1, 3, 64, 48)
    out, true = degrade(x, factor, "bicubic", "bilinear")
    assert out.shape == x.shape
    assert true == round(64 * factor) / 64
    with pytest.raises(ValueError, match="factor"):
        degrade(x, 0.0)


def test_degrade_removes_detail():
    x = torch.rand(1, 1, 64, 64)
    out, _ = degrade(x, 0.25, "area")
    # A 4x down-up of white noise keeps little of its high-frequency energy.
    assert out.diff(dim=-1).abs().mean() < 0.5 * x.diff(dim=-1).abs().mean()
