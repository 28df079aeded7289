"""Small faces: every detected face down to the 48 px floor gets a ratio relative to its own pixels."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effres_core.measure.faces import FaceBox
from effres_core.measure.scorer import EffRes

from conftest import make_tiny_net

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "faces" / "photo_sharp.jpg"
PHOTO_BOX = json.loads((ROOT / "benchmarks" / "data" / "face_boxes.json").read_text())["examples/faces/photo_sharp.jpg"]


def small_face(side: int, factor: float = 1.0, canvas=(480, 400)) -> np.ndarray:
    """The example face with its box ``side`` px, degraded by ``factor``, on a grey canvas."""
    face = Image.open(PHOTO).convert("RGB")
    k = side / max(PHOTO_BOX[2] - PHOTO_BOX[0], PHOTO_BOX[3] - PHOTO_BOX[1])
    face = face.resize((round(face.width * k), round(face.height * k)), Image.LANCZOS)
    if factor < 1:
        size = face.size
        face = face.resize((round(size[0] * factor), round(size[1] * factor)), Image.LANCZOS).resize(size, Image.BICUBIC)
    out = Image.new("RGB", canvas, (128, 128, 128))
    out.paste(face, ((canvas[0] - face.width) // 2, (canvas[1] - face.height) // 2))
    return np.asarray(out)


def test_upscale_rule():
    model = EffRes(make_tiny_net(), detector="mtcnn", masker="ellipse", device="cpu")
    model._components()
    crop = FaceBox(0, 0, 200, 200)
    assert model.face_upscale(FaceBox(0, 0, 56, 70), crop) == pytest.approx(224 / 70)
    assert model.face_upscale(FaceBox(0, 0, 300, 260), crop) == 1.0
    whole = EffRes(make_tiny_net(), detector="whole", masker="none", device="cpu")
    whole._components()  # the image is the crop: upscaled only below one (32 px) patch
    assert whole.face_upscale(FaceBox(0, 0, 20, 24), FaceBox(0, 0, 20, 24)) == pytest.approx(32 / 20)
    assert whole.face_upscale(FaceBox(0, 0, 96, 96), FaceBox(0, 0, 96, 96)) == 1.0
    with pytest.raises(ValueError, match="min_face_size"):
        EffRes(make_tiny_net(), device="cpu", min_face_size=300, face_size=224)


@pytest.mark.integration
def test_small_face_gets_a_ratio_that_ranks():
    model = EffRes.from_pretrained(device="cpu", detector="mtcnn", masker="ellipse")
    sharp, soft = model.score(small_face(70)), model.score(small_face(70, factor=0.35))
    for result in (sharp, soft):
        assert result.ratio is not None, result.reason
        (face,) = result.faces
        side = max(face.box[2] - face.box[0], face.box[3] - face.box[1])
        assert 48 <= side < 100 and face.upscale == pytest.approx(224 / side, rel=0.01)
        assert face.patches_used >= 5 and 0 < face.ratio <= 1
        scored = ~np.isnan(result.heatmap)
        assert result.heatmap.shape == (400, 480) and scored.any() and scored.mean() < 0.2
    assert sharp.ratio > soft.ratio + 0.2  # a 0.35x-detail face scores well below the sharp one


@pytest.mark.integration
def test_face_below_the_floor_gets_a_reason():
    model = EffRes.from_pretrained(device="cpu", detector="mtcnn", masker="ellipse")
    result = model.score(small_face(44))
    assert result.ratio is None and len(result.faces) == 1
    assert "48 px floor" in result.faces[0].reason and "48 px floor" in result.reason
