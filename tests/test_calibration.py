"""The monotone calibration: strictly increasing (rankings kept), fitted to pairs, saved with the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effres_core.model import hub
from effres_core.model.calibration import MonotoneMap, fit_monotone, monotone_map
from effres_core.model.net import EffResNet, fold_batchnorm

KNOTS = {"x": [0.1, 0.4, 0.7, 0.78], "y": [0.1, 0.35, 0.8, 0.97]}


def test_map_goes_through_its_knots_and_is_strictly_increasing():
    x, y = torch.tensor(KNOTS["x"], dtype=torch.float64), torch.tensor(KNOTS["y"], dtype=torch.float64)
    assert torch.allclose(monotone_map(x, x, y), y, atol=1e-6)
    v = torch.linspace(-0.5, 1.2, 2001, dtype=torch.float64)  # beyond what the network outputs
    out = monotone_map(v, x, y)
    assert torch.all(out[1:] > out[:-1])              # no ties: any ranking survives
    assert float(out.max()) < 1.0 and float(out[-1]) > 0.999  # approaches 1, never reaches it
    assert float(monotone_map(torch.tensor([0.0]), x, y)) == pytest.approx(0.0, abs=1e-6)  # slope 1 below
    mid = float(monotone_map(torch.tensor([0.55]), x, y))
    assert mid == pytest.approx(0.35 + (0.8 - 0.35) * 0.5, abs=1e-6)


def test_map_is_differentiable_with_positive_slope():
    v = torch.tensor([0.05, 0.5, 0.75, 0.9], requires_grad=True)
    MonotoneMap(**KNOTS)(v).sum().backward()
    assert torch.all(v.grad > 0)


@pytest.mark.parametrize("bad", [{"x": [0.1], "y": [0.2]}, {"x": [0.1, 0.1], "y": [0.2, 0.3]},
                                 {"x": [0.1, 0.2], "y": [0.3, 0.2]}, {"x": [0.1, 0.2], "y": [0.3, 1.0]}])
def test_bad_knots_are_rejected(bad):
    with pytest.raises(ValueError):
        MonotoneMap(**bad)


def test_fit_recovers_a_known_monotone_distortion():
    rng = np.random.default_rng(0)
    truth = np.exp(rng.uniform(np.log(0.1), 0, 600))
    pred = 0.8 * truth ** 1.3 + rng.normal(0, 0.01, truth.shape)  # conservative at the top, like the model
    xs, ys = fit_monotone(pred, truth, bins=12)
    assert all(b > a for a, b in zip(xs, xs[1:])) and all(b > a for a, b in zip(ys, ys[1:]))
    mapped = monotone_map(torch.tensor(pred, dtype=torch.float32), torch.tensor(xs), torch.tensor(ys)).numpy()
    assert np.abs(mapped - truth).mean() < 0.03 < np.abs(pred - truth).mean()
    with pytest.raises(ValueError):
        fit_monotone(pred[:10], truth[:10], bins=12)


def test_calibrated_model_saves_loads_and_folds(tmp_path):
    torch.manual_seed(0)
    net = EffResNet(patch_size=32, width=0.25).eval()
    x = torch.rand(3, 3, 32, 32)
    raw = net(x)
    net.set_calibration({**KNOTS, "fitted_on": "test pairs"})
    calibrated = net(x)
    assert torch.allclose(calibrated, monotone_map(raw, torch.tensor(KNOTS["x"]), torch.tensor(KNOTS["y"])))
    folder = hub.save_pretrained(net, tmp_path / "m")
    loaded = hub.load_pretrained(folder)
    assert loaded.config["calibration"]["fitted_on"] == "test pairs"
    assert torch.allclose(loaded(x), calibrated, atol=1e-6)
    assert torch.allclose(fold_batchnorm(loaded)(x), calibrated, atol=1e-5)
    assert set(loaded.state_dict()) == set(EffResNet(patch_size=32, width=0.25).state_dict())  # weights unchanged
    net.set_calibration(None)
    assert "calibration" not in net.config and torch.allclose(net(x), raw)
