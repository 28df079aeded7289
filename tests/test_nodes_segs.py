"""EffResFaceSEGS, EffResSEGSFilter and EffResBestOf through their V3 interface (no ComfyUI),
under ``torch.inference_mode()`` as ComfyUI runs them, on the shipped two-face example image;
and the example images the pack puts into ComfyUI's input folder."""


import numpy as np
import pytest
import torch
from PIL import Image

from nodes_support import ROOT, pack, pack_module as sub, run_node as run

TWO_FACES = ROOT / "examples" / "faces" / "two_faces.jpg"


@pytest.fixture(scope="module")
def effres_pack():
    with pack("effres_pack_segs", fake_comfy=True) as module:
        yield module


def comfy_image(path=TWO_FACES):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255)[None]


@pytest.fixture(scope="module")
def model(effres_pack):
    EffRes = sub(effres_pack, "effres_core.measure.scorer").EffRes
    with torch.inference_mode(False):
        return EffRes.from_pretrained(device="cpu", detector="haar", masker="ellipse")


@pytest.mark.integration
def test_face_segs_then_filter_keeps_only_the_soft_face(effres_pack, model):
    segs_nodes = sub(effres_pack, "nodes.segs")
    image = comfy_image()
    segs, count = run(segs_nodes.EffResFaceSEGS, effres_model=model, image=image, crop_factor=1.5)[:2]
    assert count == 2 and segs[0] == (512, 1024)
    assert all(type(s).__name__ == "SEG" and s.cropped_image.shape[0] == 1 for s in segs[1])
    kept, rejected, summary, mask = run(segs_nodes.EffResSEGSFilter, effres_model=model, segs=segs,
                                        max_ratio=0.45)[:4]
    assert len(kept[1]) == 1 and len(rejected[1]) == 1, summary
    assert kept[1][0].bbox[0] > 512  # the soft face is the right one
    assert summary.endswith("kept 1 of 2") and summary.count("-> kept") == 1
    assert mask.shape == (1, 512, 1024) and mask[0, :, :512].sum() == 0 and mask[0, :, 512:].sum() > 0
    # the opposite mode sends the sharp face instead
    kept, rejected = run(segs_nodes.EffResSEGSFilter, effres_model=model, segs=segs, max_ratio=0.45,
                         keep="out of range")[:2]
    assert kept[1][0].bbox[0] < 512 and len(rejected[1]) == 1
    with pytest.raises(ValueError, match="one image"):
        run(segs_nodes.EffResFaceSEGS, effres_model=model, image=image.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="max_ratio"):
        run(segs_nodes.EffResSEGSFilter, effres_model=model, segs=segs, min_ratio=0.6, max_ratio=0.4)


@pytest.mark.integration
def test_best_of_picks_the_sharp_image_and_crops_every_face(effres_pack, model):
    bestof = sub(effres_pack, "nodes.bestof").EffResBestOf
    sharp = comfy_image(ROOT / "examples" / "faces" / "photo_sharp.jpg")
    soft = comfy_image(ROOT / "examples" / "faces" / "photo_2x_upscaled.jpg")
    noise = torch.zeros_like(sharp)  # no face at all
    out = run(bestof, effres_model=model, images=torch.cat([soft, noise, sharp]), crop_size=128)
    best, index, crops, ratios, text = out[:5]
    assert index == 2 and torch.equal(best, sharp)
    assert crops.shape == (2, 128, 128, 3) and len(ratios) == 2 and ratios[1] > ratios[0] > 0
    assert text.startswith("best: #2") and "#1: no face" in text and text.count(" face 0:") == 2
    two = run(bestof, effres_model=model, images=comfy_image(), rank_by="worst face")
    assert two[3][0] > 0.55 and two[3][1] < 0.35  # every face listed with its own ratio
    none = run(bestof, effres_model=model, images=noise)
    assert none[1] == -1 and torch.equal(none[0], noise) and none[3] == []
    with pytest.raises(ValueError, match="rank_by"):
        run(bestof, effres_model=model, images=sharp, rank_by="loudest")


def test_example_inputs_are_copied_once_and_never_overwritten(effres_pack, tmp_path, monkeypatch):
    examples = sub(effres_pack, "nodes.examples")
    copied = examples.install_example_inputs(tmp_path)
    assert sorted(p.name for p in copied) == ["effres_example_face.jpg", "effres_example_two_faces.jpg"]
    assert (tmp_path / "effres_example_two_faces.jpg").read_bytes() == TWO_FACES.read_bytes()
    (tmp_path / "effres_example_face.jpg").write_bytes(b"the user's own file")
    assert examples.install_example_inputs(tmp_path) == []
    assert (tmp_path / "effres_example_face.jpg").read_bytes() == b"the user's own file"
    monkeypatch.setenv("EFFRES_NO_EXAMPLE_INPUTS", "1")
    assert examples.install_example_inputs(tmp_path / "other") == [] and not (tmp_path / "other").exists()


def test_every_shipped_workflow_image_ships(effres_pack):
    import json

    names = set(sub(effres_pack, "nodes.examples").EXAMPLE_INPUTS)
    for path in sorted((ROOT / "workflows" / "api").glob("*.json")):
        for node in json.loads(path.read_text()).values():
            if node["class_type"] == "LoadImage":
                assert node["inputs"]["image"] in names, f"{path.name} loads an image the pack does not ship"
