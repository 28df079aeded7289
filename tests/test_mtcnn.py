"""The bundled MTCNN face detector: networks, shipped weights, detection on real and small faces."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effres_core.measure import mtcnn
from effres_core.measure.faces import make_mtcnn

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "faces" / "photo_sharp.jpg"
PHOTO_BOX = json.loads((ROOT / "benchmarks" / "data" / "face_boxes.json").read_text())["examples/faces/photo_sharp.jpg"]


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy)


@pytest.fixture(scope="module")
def detect():
    return make_mtcnn("cpu")


def test_network_shapes():
    nets = mtcnn.MTCNN()
    prob, offsets = nets.pnet(torch.rand(2, 3, 30, 40))
    assert prob.shape == (2, 10, 15) and offsets.shape == (2, 4, 10, 15)
    assert ((prob >= 0) & (prob <= 1)).all()
    prob, offsets = nets.rnet(torch.rand(5, 3, 24, 24))
    assert prob.shape == (5,) and offsets.shape == (5, 4)
    prob, offsets, landmarks = nets.onet(torch.rand(3, 3, 48, 48))
    assert prob.shape == (3,) and offsets.shape == (3, 4) and landmarks.shape == (3, 10)


def test_shipped_weights_load_strictly_and_match_their_record():
    record = (mtcnn.WEIGHTS.parent / "MTCNN_WEIGHTS.md").read_text()
    digest = hashlib.sha256(mtcnn.WEIGHTS.read_bytes()).hexdigest()
    assert digest in record and re.search(r"licence \| MIT", record)
    nets = mtcnn.MTCNN.from_file()
    assert not nets.training and not any(p.requires_grad for p in nets.parameters())
    assert sum(p.numel() for p in nets.parameters()) == 495850


def test_finds_the_example_face(detect):
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    (box,) = detect(rgb)
    assert _iou(box.as_list(), PHOTO_BOX) > 0.7 and box.score > 0.99


def test_finds_a_small_face_in_a_large_image(detect):
    """A 60 px face in a 1600x1200 image: a pyramid search, no tiling needed."""
    face = Image.open(PHOTO).convert("RGB")
    k = 60 / max(PHOTO_BOX[2] - PHOTO_BOX[0], PHOTO_BOX[3] - PHOTO_BOX[1])
    small = face.resize((round(face.width * k), round(face.height * k)), Image.LANCZOS)
    canvas = Image.new("RGB", (1600, 1200), (90, 110, 100))
    canvas.paste(small, (1100, 700))
    truth = [1100 + PHOTO_BOX[0] * k, 700 + PHOTO_BOX[1] * k, 1100 + PHOTO_BOX[2] * k, 700 + PHOTO_BOX[3] * k]
    found = detect(np.asarray(canvas))
    assert len(found) == 1 and _iou(found[0].as_list(), truth) > 0.5


def test_no_face_in_flat_or_noise_images(detect):
    assert detect(np.full((300, 400, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert detect(noise) == []


def test_bad_input():
    nets = mtcnn.load_mtcnn("cpu")
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        mtcnn.mtcnn_detect(nets, torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="min_face"):
        mtcnn.mtcnn_detect(nets, torch.zeros(3, 64, 64), min_face=8)
    assert mtcnn.mtcnn_detect(nets, torch.zeros(3, 8, 8)).shape == (0, 5)  # smaller than one window


def test_module_equals_function():
    nets = mtcnn.load_mtcnn("cpu")
    image = torch.from_numpy(np.asarray(Image.open(PHOTO).convert("RGB")).copy()).permute(2, 0, 1)
    assert torch.equal(nets(image), mtcnn.mtcnn_detect(nets, image, thresholds=(0.6, 0.7, 0.95)))
