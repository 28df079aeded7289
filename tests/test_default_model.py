"""Integration: the bundled default model loads offline and orders a degradation ladder correctly."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from effres_core import EffRes
from effres_core.model import hub
from effres_core.synthesis.degradations import degrade
from effres_core.measure.imageio import load_image, rgb_to_tensor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "faces"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def default_model():
    if not (hub.BUNDLED_DEFAULT / hub.WEIGHTS_NAME).is_file():
        pytest.fail("the bundled default model is missing from effres_core/model/weights/default")
    return EffRes.from_pretrained(device="cpu")


def test_default_loads_without_network(monkeypatch):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise AssertionError("the default model must not touch the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = EffRes.from_pretrained(device="cpu")
    assert model.net.backbone in ("mobilenet_v2", "resnet50")


def test_model_card_and_config_load():
    config = json.loads((hub.BUNDLED_DEFAULT / hub.CONFIG_NAME).read_text())
    assert config["patch_size"] in (128, 256)
    card = (hub.BUNDLED_DEFAULT / "MODEL_CARD.md").read_text()
    assert "Validation" in card and hub.DEFAULT_REPO_ID in card


@pytest.mark.parametrize("name", ["portrait_sharp.jpg", "photo_sharp.jpg"])
def test_ladder_is_ordered(default_model, name):
    sharp = rgb_to_tensor(load_image(EXAMPLES / name)).double()
    ratios = []
    for factor in (1.0, 0.5, 0.25, 0.125):
        x = degrade(sharp, factor, "bicubic")[0] if factor < 1 else sharp
        rgb = (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        result = default_model.score(rgb)
        assert result.ratio is not None, result.reason
        ratios.append(result.ratio)
    assert ratios == sorted(ratios, reverse=True), ratios
    assert ratios[0] - ratios[-1] > 0.3, ratios


def test_differentiable_ratio_matches_range(default_model):
    x = rgb_to_tensor(load_image(EXAMPLES / "photo_sharp.jpg"))
    with torch.no_grad():
        y = default_model.ratio(x)
    assert 0.0 <= float(y) <= 1.0
