"""Face detector choice: auto's fallbacks and messages, facexlib weights found only on disk, OpenCV 5
without a Haar cascade, and third-party prints kept off stdout."""

import argparse
import importlib.machinery
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from effres_core.cli import score as score_cli
from effres_core.measure import faces, masks
from effres_core.measure.scorer import EffRes

from conftest import make_tiny_net

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "faces" / "photo_sharp.jpg"


@pytest.fixture(autouse=True)
def fresh_choice():
    """Every test chooses afresh: no cached models, every message logged again."""
    def clear():
        faces._logged.clear()
        faces._retinaface.cache_clear()
        faces._cascades.__dict__.clear()  # this thread's Haar cascades
        masks._bisenet.cache_clear()
    clear()
    yield
    clear()


@pytest.fixture
def fake_facexlib(tmp_path, monkeypatch):
    """A stand-in ``facexlib`` that prints to stdout the way the real one does when it loads
    (its download line) and detects one box; records the ``model_rootpath`` it was given."""
    calls = {}
    pkg = types.ModuleType("facexlib")
    pkg.__spec__ = importlib.machinery.ModuleSpec("facexlib", None, origin=str(tmp_path / "fx" / "__init__.py"))
    detection = types.ModuleType("facexlib.detection")

    class Model:
        def detect_faces(self, bgr, threshold):
            print("facexlib detect chatter")
            return np.array([[10.0, 20.0, 90.0, 120.0, 0.99]])

    def init_detection_model(name, half=False, device="cpu", model_rootpath=None):
        print('Downloading: "https://example.invalid/detection_Resnet50_Final.pth"')
        calls["rootpath"] = model_rootpath
        return Model()

    detection.init_detection_model = init_detection_model
    monkeypatch.setitem(sys.modules, "facexlib", pkg)
    monkeypatch.setitem(sys.modules, "facexlib.detection", detection)
    monkeypatch.setenv("EFFRES_HOME", str(tmp_path / "home"))
    return calls


def _put_weights(tmp_path, name=faces.RETINAFACE_WEIGHTS) -> Path:
    folder = tmp_path / "home" / "facexlib"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"weights")
    return folder


def test_auto_without_facexlib_is_mtcnn_and_says_why_once(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "facexlib", None)  # not importable
    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="effres"):
        _, name = faces.get_detector("auto")
        faces.get_detector("auto")
    assert name == "mtcnn"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("face detector: mtcnn")
    assert "skipped retinaface: facexlib is not installed" in lines[0]


def test_retinaface_weights_are_never_downloaded(fake_facexlib, tmp_path, caplog):
    with pytest.raises(RuntimeError) as err:
        faces.get_detector("retinaface")
    message = str(err.value)
    assert faces.RETINAFACE_WEIGHTS in message and str(tmp_path / "home" / "facexlib") in message
    assert "rootpath" not in fake_facexlib  # facexlib was never asked to load (and so to download)
    with caplog.at_level(logging.WARNING, logger="effres"):
        _, name = faces.get_detector("auto")
    assert name == "mtcnn" and "not on disk" in caplog.records[0].getMessage()


def test_retinaface_from_effres_home_keeps_stdout_clean(fake_facexlib, tmp_path, capsys):
    folder = _put_weights(tmp_path)
    detect, name = faces.get_detector("auto")
    boxes = detect(np.zeros((200, 150, 3), np.uint8))
    out, err = capsys.readouterr()
    assert name == "retinaface" and fake_facexlib["rootpath"] == str(folder)
    assert [b.as_list() for b in boxes] == [[10, 20, 90, 120]]
    assert out == "" and "Downloading" in err and "chatter" in err


def test_comfyui_models_folder_is_searched(fake_facexlib, tmp_path, monkeypatch):
    models = tmp_path / "ComfyUI" / "models"
    (models / "facedetection").mkdir(parents=True)
    (models / "facedetection" / faces.RETINAFACE_WEIGHTS).write_bytes(b"w")
    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(models_dir=str(models)))
    assert faces.find_facexlib_weight(faces.RETINAFACE_WEIGHTS) == models / "facedetection" / faces.RETINAFACE_WEIGHTS
    assert faces.get_detector("retinaface")[1] == "retinaface"


def test_json_stdout_stays_valid_when_facexlib_prints(fake_facexlib, tmp_path, tiny_model_dir, capsys):
    _put_weights(tmp_path)
    Image.new("RGB", (200, 160), (128, 100, 90)).save(tmp_path / "a.png")
    parser = argparse.ArgumentParser(prog="effres")
    score_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["score", str(tmp_path / "a.png"), "--model", str(tiny_model_dir), "--json",
                              "--detector", "retinaface", "--masker", "ellipse"])
    args.run(args)
    out, err = capsys.readouterr()
    (entry,) = json.loads(out)
    assert entry["detector"] == "retinaface" and entry["faces"][0]["box"] == [10, 20, 90, 120]
    assert "Downloading" in err


def test_opencv_5_without_cascade(monkeypatch):
    import cv2

    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)  # no facexlib either
    assert "no Haar cascade" in faces.haar_unavailable()
    with pytest.raises(RuntimeError, match="mtcnn"):
        faces.get_detector("haar")
    model = EffRes(make_tiny_net(), detector="auto", masker="ellipse", device="cpu")
    result = model.score(PHOTO)
    assert result.detector == "mtcnn" and result.ratio is not None and len(result.faces) == 1


def test_broken_cv2_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    assert "does not import" in faces.haar_unavailable()
    detect, name = faces.get_detector("mtcnn")
    assert name == "mtcnn" and len(detect(np.asarray(Image.open(PHOTO).convert("RGB")))) == 1


def test_unknown_and_explicit_detectors():
    with pytest.raises(ValueError, match="unknown detector"):
        faces.get_detector("yolo")
    assert faces.get_detector("whole")[1] == "whole"
    assert faces.get_detector("mtcnn")[1] == "mtcnn"


def test_bisenet_needs_weights_on_disk(monkeypatch, tmp_path, caplog):
    pkg = types.ModuleType("facexlib")
    pkg.__spec__ = importlib.machinery.ModuleSpec("facexlib", None, origin=str(tmp_path / "fx" / "__init__.py"))
    monkeypatch.setitem(sys.modules, "facexlib", pkg)
    monkeypatch.setenv("EFFRES_HOME", str(tmp_path / "home"))
    with pytest.raises(RuntimeError, match=faces.BISENET_WEIGHTS):
        masks.get_masker("bisenet")
    with caplog.at_level(logging.WARNING, logger="effres"):
        _, name = masks.get_masker("auto", detector="mtcnn")
    assert name == "ellipse" and "skipped bisenet" in caplog.records[0].getMessage()
