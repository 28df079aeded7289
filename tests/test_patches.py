import pytest
import torch

from effres_core.measure.patches import (PatchGrid, choose_stride, extract_patches, foreground_fraction, patch_grid,
                                 scores_to_map)


@pytest.mark.parametrize("h,w,p", [(512, 512, 128), (1024, 768, 128), (300, 900, 64), (97, 203, 32), (256, 256, 256)])
def test_count_near_target(h, w, p):
    stride = choose_stride(h, w, p, 100)
    grid = patch_grid(h, w, p, stride)
    # No other stride gets closer to 100 patches.
    best = min(abs(patch_grid(h, w, p, s).count - 100) for s in range(1, max(h, w)))
    assert abs(grid.count - 100) == best
    if (h, w) == (1024, 768):
        assert 80 <= grid.count <= 120


def test_exactly_one_patch():
    assert choose_stride(64, 64, 64) == 1
    assert patch_grid(64, 64, 64, 1).count == 1


@pytest.mark.parametrize("h,w,p,s", [(100, 130, 32, 20), (64, 64, 16, 7), (50, 90, 32, 5)])
def test_grid_is_centred_and_inside(h, w, p, s):
    g = patch_grid(h, w, p, s)
    boxes = g.boxes()
    assert len(boxes) == g.count == g.rows * g.cols
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
    assert abs(x0 - (w - x1)) <= 1 and abs(y0 - (h - y1)) <= 1  # same margin both sides
    assert w - x1 < s and h - y1 < s or g.cols == 1  # no room left for another column/row


def test_unfold_order_matches_boxes():
    x = torch.rand(2, 3, 70, 90)
    grid = patch_grid(70, 90, 32, 17)
    patches = extract_patches(x, grid)
    assert patches.shape == (2, grid.count, 3, 32, 32)
    for n, (x0, y0, x1, y1) in enumerate(grid.boxes()):
        assert torch.equal(patches[:, n], x[:, :, y0:y1, x0:x1])


def test_extract_keeps_gradients_and_accepts_non_contiguous():
    x = torch.rand(1, 40, 40, 3).permute(0, 3, 1, 2).requires_grad_(True)
    grid = patch_grid(40, 40, 16, 8)
    extract_patches(x, grid).sum().backward()
    # Every pixel inside the grid gets one gradient per patch that covers it.
    cover = torch.zeros(40, 40)
    for x0, y0, x1, y1 in grid.boxes():
        cover[y0:y1, x0:x1] += 1
    assert torch.equal(x.grad[0, 0], cover)


def test_foreground_fraction_filters_patches():
    grid = patch_grid(64, 64, 32, 32)  # 2 x 2 patches, no overlap
    mask = torch.zeros(1, 64, 64)
    mask[:, :32, :32] = 1  # top-left patch all foreground
    mask[:, :32, 32:48] = 1  # top-right patch half foreground
    frac = foreground_fraction(mask, grid)
    assert frac.shape == (1, 4)
    assert torch.allclose(frac, torch.tensor([[1.0, 0.5, 0.0, 0.0]]))
    assert torch.equal(foreground_fraction(mask[:, None], grid), frac)  # [B, 1, H, W] too
    assert ((frac >= 0.9).flatten().tolist()) == [True, False, False, False]


def test_scores_to_map():
    grid = patch_grid(64, 64, 32, 32)
    heat = scores_to_map(torch.tensor([0.2, float("nan"), 0.8, 0.4]), grid)
    assert heat.shape == (64, 64)
    assert torch.all(heat[:32, :32] == 0.2) and torch.isnan(heat[:32, 32:]).all()
    assert torch.all(heat[32:, :32] == 0.8) and torch.all(heat[32:, 32:] == 0.4)
    overlap = patch_grid(48, 32, 32, 16)  # two patches overlap on rows 16..31
    heat = scores_to_map(torch.tensor([0.2, 0.6]), overlap)
    assert torch.allclose(heat[20, 5], torch.tensor(0.4))


def test_bad_input():
    with pytest.raises(ValueError, match="smaller"):
        patch_grid(20, 100, 32, 8)
    with pytest.raises(ValueError, match="smaller"):
        choose_stride(100, 20, 32)
    with pytest.raises(ValueError, match="stride"):
        patch_grid(64, 64, 32, 0)
    with pytest.raises(ValueError, match="target_patches"):
        choose_stride(64, 64, 32, 0)
    grid = patch_grid(64, 64, 32, 16)
    with pytest.raises(ValueError, match="grid is for"):
        extract_patches(torch.rand(1, 3, 64, 65), grid)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        extract_patches(torch.rand(3, 64, 64), grid)
    with pytest.raises(ValueError, match="mask"):
        foreground_fraction(torch.rand(1, 3, 64, 64), grid)
    assert isinstance(grid, PatchGrid)
