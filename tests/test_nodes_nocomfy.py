"""The pack without ComfyUI: importing it is harmless, and the format glue the nodes use works on
plain tensors, including the inference-mode trap ComfyUI sets for gradient code."""

import importlib

import pytest
import torch

from nodes_support import comfy_images, inference_tensors_in, pack


@pytest.fixture(scope="module")
def bare_pack():
    with pack("effres_pack_bare", fake_comfy=False) as module:
        yield module


@pytest.fixture(scope="module")
def common(bare_pack):
    return importlib.import_module("effres_pack_bare.nodes._common")


def test_pack_exports_nothing_without_comfyui(bare_pack):
    assert bare_pack.__all__ == [] and not hasattr(bare_pack, "comfy_entrypoint")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("comfy_api")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_channel_round_trip(common, channels):
    images = comfy_images(2, 16, 24, c=channels)
    rgb, alpha = common.image_to_rgb(images)
    assert rgb.shape == (2, 3, 16, 24) and (alpha is not None) == (channels in (2, 4))
    assert torch.allclose(common.rgb_to_image(rgb, alpha, channels), images)


def test_image_and_mask_checks(common):
    assert common.check_image(torch.rand(8, 8, 3)).shape == (1, 8, 8, 3)
    with pytest.raises(ValueError, match="IMAGE"):
        common.check_image(torch.rand(1, 3, 8, 8, 2))
    with pytest.raises(TypeError):
        common.check_image([[0.5]])
    assert common.check_mask(torch.ones(8, 8), 3, 8, 8).shape == (3, 8, 8)
    assert common.check_mask(None, 3, 8, 8) is None
    with pytest.raises(ValueError, match="batch"):
        common.check_mask(torch.ones(2, 8, 8), 3, 8, 8)
    with pytest.raises(ValueError, match="does not match"):
        common.check_mask(torch.ones(3, 4, 4), 3, 8, 8)


def test_inference_tensor_weights_need_a_private_copy(bare_pack, common):
    """Weights made under inference mode (as ComfyUI loads them) break the enhancer's backward
    pass; ``autograd_ready`` makes an ordinary copy and leaves the original alone."""
    model_mod = importlib.import_module("effres_pack_bare.effres_core.model.net")
    enhance = importlib.import_module("effres_pack_bare.effres_core.gradient.enhance").enhance
    torch.manual_seed(0)
    with torch.inference_mode():
        net = model_mod.EffResNet(patch_size=32, width=0.25).eval()
        images = comfy_images(1, 64, 64)
    assert inference_tensors_in(net) > 0
    with torch.inference_mode(False):
        with pytest.raises(RuntimeError, match="[Ii]nference tensor"):
            enhance(net, images.clone(), steps=1, mask=False)
        ready = common.autograd_ready(net)
        assert ready is not net and inference_tensors_in(ready) == 0 and inference_tensors_in(net) > 0
        # jitter off: a tiny random net is not shift-consistent, so only its own grid is sure to rise
        result = enhance(ready, common.grad_input(images), steps=2, mask=False, jitter=False)
    assert float(result.after[0]) > float(result.before[0])
    plain = model_mod.EffResNet(patch_size=32, width=0.25)
    assert common.autograd_ready(plain) is plain  # nothing to copy


def test_scoring_glue(bare_pack, common):
    pipeline = importlib.import_module("effres_pack_bare.effres_core.measure.scorer")
    model_mod = importlib.import_module("effres_pack_bare.effres_core.model.net")
    torch.manual_seed(0)
    with torch.inference_mode():
        scorer = pipeline.EffRes(model_mod.EffResNet(patch_size=32, width=0.25), detector="whole",
                                 masker="none", device="cpu")
        images = comfy_images(2, 64, 64)
        images[1, 0, 0, 0] = float("nan")
        results = common.score_images(scorer, images)
    assert results[0].ratio is not None and results[1].ratio is None and "NaN" in results[1].error
    assert [common.ratio_of(r) for r in results][1] == common.NOT_SCORED
    assert common.effective_height(results[0]) == round(results[0].ratio * 64)
    lines = common.describe(results).splitlines()
    assert lines[0].startswith("#0: ratio") and "not scored" in lines[1]
    assert common.heatmap_image(results, images).shape == (2, 64, 64, 3)
    assert common.mask_batch(results, 64, 64).shape == (2, 64, 64)
    assert common.describe([]) == "empty batch: nothing to score"
