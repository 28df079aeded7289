"""integrations.ray: the map_batches predictor, and Ray Data on a local 2-CPU instance giving the plain path's ratios."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from effres_core.integrations.ray import OUTPUT_COLUMNS, EffResPredictor
from effres_core.measure.imageio import load_image
from effres_core.measure.scorer import EffRes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "faces"
SETTINGS = {"detector": "haar", "masker": "ellipse", "device": "cpu"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ray_images")
    out = []
    for p in sorted(EXAMPLES.glob("*.jpg")):
        shutil.copy(p, folder / p.name)
        out.append(folder / p.name)
    (folder / "broken.jpg").write_bytes(out[0].read_bytes()[:3000])
    return out + [folder / "broken.jpg"]


def plain_ratios(model_dir, files) -> dict[str, float | None]:
    model = EffRes.from_pretrained(str(model_dir), **SETTINGS)
    out = {}
    for f in files:
        try:
            out[str(f)] = model.score_rgb(load_image(f)).ratio
        except ValueError:
            out[str(f)] = None
    return out


def test_predictor_turns_bytes_into_columns_and_errors_into_rows(tiny_model_dir, files):
    predictor = EffResPredictor(str(tiny_model_dir), **SETTINGS)
    batch = {"bytes": np.array([f.read_bytes() for f in files], dtype=object),
             "path": np.array([str(f) for f in files], dtype=object)}
    out = predictor(batch)
    assert set(out) == set(OUTPUT_COLUMNS) and all(len(v) == len(files) for v in out.values())
    ref = plain_ratios(tiny_model_dir, files)
    for i, f in enumerate(files):
        if ref[str(f)] is None:
            assert "cannot decode" in out["error"][i] and out["ratio"][i] is None
        else:
            assert out["ratio"][i] == pytest.approx(ref[str(f)], abs=1e-4)
            assert out["n_faces"][i] == len(json.loads(out["faces"][i])) >= 1
            assert len(out["sha256"][i]) == 64
    arrays = predictor({"image": np.stack([load_image(files[0])] * 2)})
    assert arrays["ratio"][0] == pytest.approx(ref[str(files[0])], abs=1e-4)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
    yield ray
    ray.shutdown()


def test_ray_data_gives_the_plain_ratios(ray_local, tiny_model_dir, files, tmp_path):
    from effres_core.curate import CurateOptions, collect_inputs, curate, read_manifest
    from effres_core.integrations.ray import ray_score_fn

    score = ray_score_fn(str(tiny_model_dir), "tiny@0", "s", concurrency=1, batch_size=2, **SETTINGS)
    manifest = tmp_path / "m.parquet"
    inputs = collect_inputs([str(files[0].parent), str(tmp_path / "missing.jpg")])
    summary = curate(inputs, score, CurateOptions(manifest=str(manifest), progress=False), "tiny@0", "s")
    rows = {r["path"]: r for r in read_manifest(manifest)}
    assert summary.scored == len(files) + 1 and len(rows) == len(files) + 1
    ref = plain_ratios(tiny_model_dir, files)
    for f in files:
        r = rows[str(f)]
        if ref[str(f)] is None:
            assert r["error"] and r["decision"] == "failed"
        else:
            assert r["ratio"] == pytest.approx(ref[str(f)], abs=1e-4)
            assert r["size"] == f.stat().st_size and r["mtime"] == f.stat().st_mtime
    assert "no such file" in rows[str(tmp_path / "missing.jpg")]["error"]
