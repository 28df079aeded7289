"""The node classes through their V3 interface, with plain tensors, in CI (no ComfyUI installed).

ComfyUI's API is replaced by the minimal ``tests/fake_comfy`` stand-in; every ``execute`` runs
under ``torch.inference_mode()`` as ComfyUI's executor does, so the inference-tensor trap is real.
"""

import asyncio
import json

import pytest
import torch

from nodes_support import comfy_images, inference_tensors_in, pack, pack_module as sub, run_node as run

NODE_IDS = {"EffResLoader", "EffResScore", "EffResFilter", "EffResGuidance", "EffResEnhance", "EffResFaceMask",
            "EffResFaceSEGS", "EffResSEGSFilter", "EffResBestOf"}


@pytest.fixture(scope="module")
def effres_pack():
    with pack("effres_pack_fake", fake_comfy=True) as module:
        yield module


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, effres_pack):
    torch.manual_seed(0)
    net = sub(effres_pack, "effres_core.model.net").EffResNet(patch_size=32, width=0.25).eval()
    return sub(effres_pack, "effres_core.model.hub").save_pretrained(net, tmp_path_factory.mktemp("effres") / "tiny")


def node(effres_pack, module, name):
    return getattr(sub(effres_pack, f"nodes.{module}"), name)


@pytest.fixture(scope="module")
def model(effres_pack, tiny_folder):
    loader = node(effres_pack, "loader", "EffResLoader")
    return run(loader, weights="default (bundled)", hub_id=str(tiny_folder), device="cpu",
               detector="whole", masker="none")[0]


def test_entrypoint_lists_every_node(effres_pack):
    extension = asyncio.run(effres_pack.comfy_entrypoint())
    classes = asyncio.run(extension.get_node_list())
    assert {c.define_schema().node_id for c in classes} == NODE_IDS


def test_schemas_have_tooltips_and_category(effres_pack):
    for cls in sub(effres_pack, "nodes").node_classes():
        schema = cls.define_schema()
        assert schema.category == "effres"
        assert schema.inputs, schema.node_id
        for item in schema.inputs:
            assert item.tooltip, f"{schema.node_id}.{item.id} has no tooltip"


def test_loader_builds_autograd_ready_weights_and_caches(effres_pack, tiny_folder, model):
    assert inference_tensors_in(model.net) == 0  # loaded under inference mode, yet usable by autograd
    loader = node(effres_pack, "loader", "EffResLoader")
    again = run(loader, weights="default (bundled)", hub_id=str(tiny_folder), device="cpu",
                detector="whole", masker="none")[0]
    assert again is model
    other = run(loader, weights="default (bundled)", hub_id=str(tiny_folder), device="cpu",
                detector="whole", masker="ellipse")[0]
    assert other is not model and other.masker_name == "ellipse"


def test_loader_bad_choices(effres_pack):
    loader = node(effres_pack, "loader", "EffResLoader")
    with pytest.raises(ValueError, match="not in models/effres"):
        run(loader, weights="missing.safetensors", device="cpu")
    with pytest.raises(ValueError, match="cannot load weights"):
        run(loader, weights="default (bundled)", hub_id="./no/such/folder", device="cpu")
    with pytest.raises(ValueError, match="device"):
        run(loader, weights="default (bundled)", device="tpu")


def test_score_batch(effres_pack, model):
    score = node(effres_pack, "score", "EffResScore")
    images = comfy_images(3, 64, 48)
    out = run(score, effres_model=model, images=images)
    ratios, pixels, summary, heatmap, mask = out.args
    assert len(ratios) == len(pixels) == 3
    assert all(0.0 <= r <= 1.0 for r in ratios)
    assert pixels == [round(r * 64) for r in ratios]
    rows = json.loads(summary)
    assert [row["index"] for row in rows] == [0, 1, 2]
    assert [row["ratio"] for row in rows] == pytest.approx(ratios)
    assert heatmap.shape == (3, 64, 48, 3) and 0 <= heatmap.min() and heatmap.max() <= 1
    assert mask.shape == (3, 64, 48)
    text = out.ui.as_dict()["text"][0]
    assert text.count("\n") == 2 and f"{ratios[0]:.3f}" in text


def test_score_matches_core(effres_pack, model):
    """The node adds nothing to the number: it is the core pipeline's score."""
    images = comfy_images(2, 64, 64, seed=3)
    out = run(node(effres_pack, "score", "EffResScore"), effres_model=model, images=images)
    expected = [r.ratio for r in model.score(images)]
    assert out.args[0] == pytest.approx(expected)


def test_score_channel_layouts_agree(effres_pack, model):
    score = node(effres_pack, "score", "EffResScore")
    gray = comfy_images(2, 64, 64, c=1, seed=1)
    rgb = gray.expand(-1, -1, -1, 3)
    opaque = torch.cat([rgb, torch.ones_like(gray)], dim=-1)
    gray_alpha = torch.cat([gray, torch.ones_like(gray)], dim=-1)
    want = run(score, effres_model=model, images=rgb)[0]
    for images in (gray, opaque, gray_alpha):
        assert run(score, effres_model=model, images=images)[0] == pytest.approx(want)


def test_score_bad_images_are_reported_not_raised(effres_pack, model):
    score = node(effres_pack, "score", "EffResScore")
    images = comfy_images(3, 64, 64)
    images[1, 5, 5, 0] = float("nan")
    ratios, pixels, summary, heatmap, mask = run(score, effres_model=model, images=images).args
    assert ratios[1] == -1.0 and pixels[1] == -1 and ratios[0] >= 0 and ratios[2] >= 0
    assert "NaN" in json.loads(summary)[1]["error"]
    small = run(score, effres_model=model, images=comfy_images(1, 16, 16))
    assert small[0] == [-1.0] and "smaller than" in small.ui.as_dict()["text"][0]


def test_score_empty_batch_and_single_image(effres_pack, model):
    score = node(effres_pack, "score", "EffResScore")
    out = run(score, effres_model=model, images=comfy_images(0, 64, 64))
    assert out.args[:3] == ([], [], "[]")
    assert out.args[3].shape == (0, 64, 64, 3) and out.args[4].shape == (0, 64, 64)
    assert "empty batch" in out.ui.as_dict()["text"][0]
    one = run(score, effres_model=model, images=comfy_images(1, 64, 64)[0])  # an unbatched [H, W, C]
    assert len(one[0]) == 1


def test_score_no_face(effres_pack, tiny_folder):
    haar = run(node(effres_pack, "loader", "EffResLoader"), weights="default (bundled)", hub_id=str(tiny_folder),
               device="cpu", detector="haar", masker="ellipse")[0]
    flat = torch.full((2, 96, 96, 3), 0.5)
    out = run(node(effres_pack, "score", "EffResScore"), effres_model=haar, images=flat)
    assert out[0] == [-1.0, -1.0]
    assert all(row["reason"] == "no face found" for row in json.loads(out[2]))
    assert float(out[4].max()) == 0.0


def test_score_rejects_non_images(effres_pack, model):
    score = node(effres_pack, "score", "EffResScore")
    with pytest.raises(ValueError, match="IMAGE"):
        run(score, effres_model=model, images=torch.rand(2, 64, 64, 7))
    with pytest.raises(TypeError, match="float"):
        run(score, effres_model=model, images=torch.zeros(1, 64, 64, 3, dtype=torch.uint8))


@pytest.fixture(scope="module")
def scored(effres_pack, model):
    images = comfy_images(4, 64, 64, seed=7)
    ratios = run(node(effres_pack, "score", "EffResScore"), effres_model=model, images=images)[0]
    assert len(set(ratios)) == 4, "the tiny model should tell these images apart"
    return images, ratios


def filter_run(effres_pack, model, images, **settings):
    return run(node(effres_pack, "filter", "EffResFilter"), effres_model=model, images=images, **settings)


def test_filter_threshold(effres_pack, model, scored):
    images, ratios = scored
    cut = sorted(ratios)[1] + 1e-6  # between the 2nd and 3rd lowest: two pass
    kept, rejected, indices, count = filter_run(effres_pack, model, images, min_ratio=cut).args
    want = [i for i, r in enumerate(ratios) if r >= cut]
    assert json.loads(indices) == want and count == 2
    assert torch.equal(kept, images[want])
    assert torch.equal(rejected, images[[i for i in range(4) if i not in want]])


def test_filter_top_n_best_first(effres_pack, model, scored):
    images, ratios = scored
    out = filter_run(effres_pack, model, images, min_ratio=0.0, top_n=3, order="best first")
    best = sorted(range(4), key=lambda i: -ratios[i])[:3]
    assert json.loads(out[2]) == best and torch.equal(out[0], images[best])


def test_filter_effective_pixels(effres_pack, model, scored):
    images, ratios = scored
    need = round(max(ratios) * 64)
    out = filter_run(effres_pack, model, images, min_ratio=0.0, min_effective_pixels=need)
    assert json.loads(out[2]) == [i for i, r in enumerate(ratios) if round(r * 64) >= need]


def test_filter_when_none_pass(effres_pack, model, scored):
    images, ratios = scored
    blocker = sub(effres_pack, "nodes._common").ExecutionBlocker
    best = filter_run(effres_pack, model, images, min_ratio=1.0, when_none_pass="pass the best one")
    assert json.loads(best[2]) == [max(range(4), key=lambda i: ratios[i])] and best[3] == 1
    assert "best of none passing" in best.ui.as_dict()["text"][0]
    stop = filter_run(effres_pack, model, images, min_ratio=1.0, when_none_pass="stop this branch")
    assert isinstance(stop[0], blocker) and "no image passed" in stop[0].message
    assert torch.equal(stop[1], images) and stop[3] == 0
    # nothing rejected: the rejected branch is skipped quietly
    everything = filter_run(effres_pack, model, images, min_ratio=0.0)
    assert isinstance(everything[1], blocker) and everything[1].message is None


def test_filter_empty_batch(effres_pack, model):
    out = filter_run(effres_pack, model, comfy_images(0, 64, 64))
    assert "batch is empty" in out[0].message and out[3] == 0


def test_facemask(effres_pack, tiny_folder):
    ellipse = run(node(effres_pack, "loader", "EffResLoader"), weights="default (bundled)", hub_id=str(tiny_folder),
                  device="cpu", detector="whole", masker="ellipse")[0]
    facemask = node(effres_pack, "facemask", "EffResFaceMask")
    images = comfy_images(2, 80, 64)
    mask = run(facemask, effres_model=ellipse, images=images)[0]
    assert mask.shape == (2, 80, 64) and 0 < float(mask.mean()) < 1
    assert run(facemask, effres_model=ellipse, images=comfy_images(0, 80, 64))[0].shape == (0, 80, 64)
    nan = images.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        run(facemask, effres_model=ellipse, images=nan)


def enhance_run(effres_pack, model, images, **settings):
    settings = {"direction": "sharpen", "steps": 3, "step_size": 100.0, "max_change": 16.0, **settings}
    return run(node(effres_pack, "enhance", "EffResEnhance"), effres_model=model, images=images, **settings)


def test_enhance_under_inference_mode(effres_pack, model):
    images = comfy_images(2, 64, 64, seed=5)
    out, before, after = enhance_run(effres_pack, model, images).args
    assert out.shape == images.shape
    assert len(before) == len(after) == 2
    assert all(a > b for a, b in zip(after, before)), (before, after)
    change = (out - images).abs().max().item()
    assert 0 < change <= 16 / 255 + 1e-6
    _, b2, a2 = enhance_run(effres_pack, model, images, direction="soften").args
    assert all(a < b for a, b in zip(a2, b2)), (b2, a2)


def test_enhance_mask_alpha_and_channels(effres_pack, model):
    rgb = comfy_images(1, 64, 64, seed=6)
    alpha = torch.linspace(0, 1, 64).view(1, 64, 1, 1).expand(1, 64, 64, 1)
    out = enhance_run(effres_pack, model, torch.cat([rgb, alpha], dim=-1))[0]
    assert out.shape == (1, 64, 64, 4) and torch.equal(out[..., 3:], alpha)
    half = torch.zeros(1, 64, 64)
    half[:, :, 32:] = 1
    out = enhance_run(effres_pack, model, rgb, mask=half)[0]
    assert torch.equal(out[:, :, :32], rgb[:, :, :32]) and not torch.equal(out[:, :, 32:], rgb[:, :, 32:])
    gray = enhance_run(effres_pack, model, rgb[..., :1])[0]
    assert gray.shape == (1, 64, 64, 1)


def test_enhance_bad_input(effres_pack, model):
    empty = enhance_run(effres_pack, model, comfy_images(0, 64, 64))
    assert empty[0].shape[0] == 0 and empty[1] == [] and "empty batch" in empty.ui.as_dict()["text"][0]
    nan = comfy_images(2, 64, 64)
    nan[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"images \[1\] hold NaN"):
        enhance_run(effres_pack, model, nan)
    with pytest.raises(ValueError, match="mask shape"):
        enhance_run(effres_pack, model, comfy_images(1, 64, 64), mask=torch.ones(1, 32, 32))
    same = enhance_run(effres_pack, model, comfy_images(1, 64, 64), mask=torch.zeros(1, 64, 64))
    assert torch.equal(same[0], comfy_images(1, 64, 64)) and "unchanged" in same.ui.as_dict()["text"][0]


def test_score_huge_image(effres_pack, model):
    """A large image costs about the same patches as a small one (the grid holds ~100)."""
    images = comfy_images(1, 1280, 960, seed=9)
    ratios, pixels, summary, heatmap, mask = run(node(effres_pack, "score", "EffResScore"),
                                                 effres_model=model, images=images).args
    assert 0 <= ratios[0] <= 1 and pixels[0] == round(ratios[0] * 1280)
    assert json.loads(summary)[0]["faces"][0]["patches_used"] <= 130
    assert heatmap.shape == (1, 1280, 960, 3) and mask.shape == (1, 1280, 960)
