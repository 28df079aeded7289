"""Impact Pack SEGS without Impact Pack: built from face boxes, read as Impact Pack builds them
(its Ultralytics detector's value types), scored per face and split by effective resolution."""

from collections import namedtuple

import numpy as np
import pytest
import torch
from PIL import Image

from effres_core.integrations.comfy_segs import (SEG, SEG_FIELDS, SegScore, check_segs, combined_mask,
                                                 describe_scores, faces_to_segs, make_crop_region, score_segs,
                                                 split_segs)
from effres_core.measure.faces import FaceBox
from nodes_support import ROOT

TWO_FACES = ROOT / "examples" / "faces" / "two_faces.jpg"
#: Impact Pack's own class: same name and fields, a different namedtuple type.
ImpactSEG = namedtuple("SEG", list(SEG_FIELDS), defaults=[None])


def comfy_image(path=TWO_FACES) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255)[None]


def impact_style_seg(image: torch.Tensor, box, crop_factor=3.0):
    """A SEG with the value types Impact Pack's Ultralytics bbox detector gives: float32 bbox array,
    confidence array, crop region list, tensor crop, float32 mask over the crop."""
    _, h, w, _ = image.shape
    bbox = np.array(box, dtype=np.float32)
    region = make_crop_region(w, h, bbox, crop_factor)
    x1, y1, x2, y2 = region
    full = np.zeros((h, w), dtype=np.float32)
    full[int(bbox[1]):int(bbox[3]), int(bbox[0]):int(bbox[2])] = 1
    return ImpactSEG(image[:, y1:y2, x1:x2, :], full[y1:y2, x1:x2], np.array([0.93], dtype=np.float32), region,
                     bbox, "face", None)


def test_seg_has_impact_packs_fields():
    assert SEG._fields == ("cropped_image", "cropped_mask", "confidence", "crop_region", "bbox", "label",
                           "control_net_wrapper")
    assert SEG(None, None, 1.0, [0, 0, 1, 1], (0, 0, 1, 1), "face").control_net_wrapper is None


@pytest.mark.parametrize("box, factor, expected", [
    ((40, 40, 60, 60), 2.0, [30, 30, 70, 70]),      # centred
    ((0, 0, 20, 20), 3.0, [0, 0, 60, 60]),          # over the top-left edge: shifted inside
    ((90, 80, 100, 100), 3.0, [70, 40, 100, 100]),  # over the bottom-right edge
    ((10, 10, 90, 90), 3.0, [0, 0, 100, 100]),      # larger than the image: cut to it
])
def test_crop_region_like_impact_pack(box, factor, expected):
    assert make_crop_region(100, 100, box, factor) == expected


def test_faces_to_segs_structure():
    image = torch.rand(1, 120, 200, 3)
    segs = faces_to_segs(image, [FaceBox(20, 30, 60, 70, 0.8), FaceBox(150, 10, 155, 16)], crop_factor=2.0,
                         dilation=2)
    (h, w), items = check_segs(segs)
    assert (h, w) == (120, 200) and len(items) == 1  # the 5 px box is below drop_size
    seg = items[0]
    x1, y1, x2, y2 = seg.crop_region
    assert seg.crop_region == [0, 10, 80, 90] and seg.bbox == (20, 30, 60, 70)
    assert torch.equal(seg.cropped_image, image[:, y1:y2, x1:x2, :])
    assert seg.cropped_mask.dtype == np.float32 and seg.cropped_mask.shape == (80, 80)
    ys, xs = np.nonzero(seg.cropped_mask)  # the box grown by 2 px, in crop coordinates
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (18, 61, 18, 61)
    assert seg.confidence == pytest.approx(0.8) and seg.label == "face"
    mask = combined_mask(segs)
    assert mask.shape == (1, 120, 200) and mask.sum() == seg.cropped_mask.sum()
    with pytest.raises(ValueError, match="one image"):
        faces_to_segs(torch.rand(2, 32, 32, 3), [])


@pytest.mark.parametrize("bad, message", [
    ([1, 2, 3], "SEGS"), (((10, 10), [object()]), "not an Impact Pack SEG"),
    (((10, 10), [SEG(None, None, 1.0, [5, 5, 5, 9], (0, 0, 1, 1), "x")]), "crop_region"),
])
def test_bad_segs(bad, message):
    with pytest.raises(ValueError, match=message):
        check_segs(bad)


def scores(*ratios):
    return [SegScore(i, "face", (0, 0, 100, 100), r, None if r is None else round(r * 100)) for i, r in enumerate(ratios)]


def test_split_modes():
    segs = ((100, 100), [SEG(None, np.ones((4, 4), np.float32), 1.0, [0, 0, 4, 4], (0, 0, 4, 4), str(i))
                         for i in range(4)])
    s = scores(0.2, 0.7, None, 0.4)
    kept, rejected, flags = split_segs(segs, s, max_ratio=0.45)
    assert [x.label for x in kept[1]] == ["0", "2", "3"] and [x.label for x in rejected[1]] == ["1"]
    assert kept[0] == rejected[0] == (100, 100)
    kept, _, _ = split_segs(segs, s, min_ratio=0.45, keep="out of range", unscored="rejected")
    assert [x.label for x in kept[1]] == ["0", "3"]
    kept, _, _ = split_segs(segs, s, min_effective_pixels=50, keep="out of range")  # tiny effective size
    assert [x.label for x in kept[1]] == ["0", "2", "3"]
    text = describe_scores(s, flags)
    assert text.count("\n") == 3 and "not scored" in text and "-> kept" in text
    with pytest.raises(ValueError, match="keep"):
        split_segs(segs, s, keep="sharp")
    with pytest.raises(ValueError, match="min_ratio"):
        split_segs(segs, s, min_ratio=0.8, max_ratio=0.2)


@pytest.fixture(scope="module")
def model():
    from effres_core import EffRes

    return EffRes.from_pretrained(device="cpu", detector="haar", masker="ellipse")


@pytest.mark.integration
def test_scores_impact_built_segs_and_keeps_the_soft_face(model):
    """Impact-style SEGS of the example image (sharp face left, 4x-softened face right)."""
    image = comfy_image()
    boxes = [f.box for f in model.score(TWO_FACES).faces]
    assert len(boxes) == 2
    segs = ((512, 1024), [impact_style_seg(image, b) for b in sorted(boxes)])
    result = score_segs(model, segs)
    sharp, soft = result
    assert sharp.ratio > 0.55 and soft.ratio < 0.35, result
    assert soft.effective_pixels == round(soft.ratio * min(soft.bbox[2] - soft.bbox[0], soft.bbox[3] - soft.bbox[1]))
    kept, rejected, _ = split_segs(segs, result, max_ratio=0.45)
    assert [s.bbox[0] for s in kept[1]] == [soft.bbox[0]] and len(rejected[1]) == 1
    assert type(kept[1][0]) is ImpactSEG  # SEGs pass through untouched
    # the image input gives the same crops, also for SEGs without cropped_image (mask-made SEGS)
    bare = ((512, 1024), [s._replace(cropped_image=None) for s in segs[1]])
    again = score_segs(model, bare, image)
    assert [round(s.ratio, 4) for s in again] == [round(s.ratio, 4) for s in result]
    with pytest.raises(ValueError, match="cropped_image"):
        score_segs(model, bare)


@pytest.mark.integration
def test_seg_box_without_a_detected_face_is_scored_itself(model):
    """When no face the detector finds in the crop overlaps the SEG's box, the box itself is scored."""
    image = comfy_image()
    region = [512, 0, 1024, 512]
    seg = ImpactSEG(image[:, :, 512:, :], np.ones((512, 512), np.float32), 0.5, region, (512, 352, 672, 512), "face")
    result = score_segs(model, ((512, 1024), [seg]))[0]
    assert result.found_by == "SEG box" and isinstance(result.ratio, float), result
    found = score_segs(model, ((512, 1024), [impact_style_seg(image, (638, 86, 900, 348))]))[0]
    assert found.found_by == "detected in crop"


def test_whole_face_model_keeps_the_scorers_settings():
    from conftest import make_tiny_net

    from effres_core.integrations.comfy_segs import whole_face_model
    from effres_core.measure.scorer import EffRes

    model = EffRes(make_tiny_net(), device="cpu", min_face_size=60, face_size=200, n_patches=9)
    whole = whole_face_model(model)
    assert whole.detector_name == "whole" and whole.net is model.net
    assert (whole.min_face_size, whole.face_size, whole.n_patches) == (60, 200, 9)
