"""benchmarks/make_ablation_report.py: its argument parsing and the enhancement-transfer table."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import face_like_image, make_tiny_net

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_ablation_report as report  # noqa: E402


def test_parse_models():
    assert report.parse_models(["a=runs/x/last", "b=c=d"]) == {"a": "runs/x/last", "b": "c=d"}
    for bad in ("runs/x", "=path", "name="):
        with pytest.raises(SystemExit, match="NAME=PATH"):
            report.parse_models([bad])


def test_enhancement_transfer_table():
    torch.set_num_threads(1)
    nets = {"a": make_tiny_net(seed=0), "b": make_tiny_net(seed=1)}
    image = torch.from_numpy(face_like_image(64)).permute(2, 0, 1)[None].double() / 255
    # jitter off: tiny random nets are not shift-consistent, so only their own grid is sure to rise
    table = report.enhancement_transfer(nets, [SimpleNamespace(image=image)], steps=3, n_patches=4, jitter=False)
    assert set(table) == {"a", "b"} and all(set(row) == {"a", "b"} for row in table.values())
    # Sharpening along a model's own gradient must raise that model's score.
    assert table["a"]["a"] > 0 and table["b"]["b"] > 0
