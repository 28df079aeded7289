import numpy as np
import pytest
from PIL import Image

from effres_core.measure.heatmap import colorize, overlay_heatmap, render_result, save_heatmap
from effres_core.measure.scorer import FaceScore, ScoreResult


def test_colorize_ends_and_nan():
    c = colorize(np.array([0.0, 1.0, np.nan, -3.0, 7.0]))
    assert c.dtype == np.uint8 and c.shape == (5, 3)
    assert tuple(c[0]) == (68, 1, 84) and tuple(c[1]) == (253, 231, 37)
    assert tuple(c[3]) == tuple(c[0]) and tuple(c[4]) == tuple(c[1])  # clipped


def test_overlay_only_where_scored():
    rgb = np.full((120, 160, 3), 200, np.uint8)
    heat = np.full((120, 160), np.nan, np.float32)
    heat[10:50, 20:80] = 0.0
    out = overlay_heatmap(rgb, heat, alpha=0.5, legend=False)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[60:, :], rgb[60:, :])  # untouched where NaN
    assert tuple(out[20, 30]) == (134, 101, 142)  # half image, half the low-end colour
    assert np.array_equal(overlay_heatmap(rgb, heat, alpha=0.0, legend=False), rgb)


def test_legend_drawn_on_big_images_only():
    rgb = np.full((200, 300, 3), 255, np.uint8)
    heat = np.full((200, 300), np.nan, np.float32)
    with_legend = overlay_heatmap(rgb, heat)
    corner = with_legend[150:, 200:]
    assert (corner < 255).any() and np.array_equal(with_legend[:100, :100], rgb[:100, :100])
    small = np.full((40, 40, 3), 255, np.uint8)
    assert np.array_equal(overlay_heatmap(small, np.full((40, 40), np.nan)), small)


def test_bad_input():
    rgb = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="does not match"):
        overlay_heatmap(rgb, np.zeros((10, 11)))
    with pytest.raises(ValueError, match="uint8"):
        overlay_heatmap(rgb.astype(np.float32), np.zeros((10, 10)))
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(rgb, np.zeros((10, 10)), alpha=2)


def test_save_heatmap(tmp_path):
    rgb = np.full((128, 128, 3), 90, np.uint8)
    heat = np.full((128, 128), np.nan, np.float32)
    heat[32:96, 32:96] = 0.8
    result = ScoreResult(ratio=0.8, faces=[FaceScore([30, 30, 100, 100], 0.8, 4)], heatmap=heat)
    path = save_heatmap(result, rgb, tmp_path / "sub" / "x_heatmap.png")
    saved = np.asarray(Image.open(path))
    assert saved.shape == (128, 128, 3) and np.array_equal(saved, render_result(result, rgb))
    # Nothing scored (no heatmap at all): still a picture of the image.
    empty = save_heatmap(ScoreResult(reason="no face found"), rgb, tmp_path / "y.png")
    assert np.asarray(Image.open(empty)).shape == (128, 128, 3)
