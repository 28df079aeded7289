"""The API workflows in a real ComfyUI, in-process, on the CPU (skipped unless ``COMFYUI_DIR`` is set).

    COMFYUI_DIR=<unpacked ComfyUI> COMFYUI_PYTHON=<its venv python> pytest tests/test_comfyui_e2e.py

Uses ``../shared/tools/comfyui-e2e/run_workflow.py`` (or ``EFFRES_COMFYUI_TOOLS``) and its
``tiny_sd_testnodes`` for the graph that samples. Every graph runs as shipped, against an empty
input folder: the pack itself puts the example images there when it loads (``nodes/examples.py``).
Without a bundled default model the loaders get a tiny random one (wiring, not quality).

With Impact Pack (``IMPACT_PACK_DIR`` = its folder, ``IMPACT_PYTHON`` = a venv that runs it, e.g.
with its ``numpy<2``), ``tests/comfyui/impact_detailer.json`` runs Impact Pack's DetailerForEach on
the SEGS that the effres filter kept, through ``tests/comfyui/run_with_server.py``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nodes_support import ROOT

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
TOOLS = Path(os.environ.get("EFFRES_COMFYUI_TOOLS", ROOT.parent / "shared" / "tools" / "comfyui-e2e"))
API_DIR = ROOT / "workflows" / "api"
E2E_DIR = ROOT / "tests" / "comfyui"
IMPACT_PACK_DIR = os.environ.get("IMPACT_PACK_DIR")

pytestmark = [
    pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to an unpacked ComfyUI to run the e2e tests"),
    pytest.mark.skipif(not (TOOLS / "run_workflow.py").is_file(), reason=f"no run_workflow.py in {TOOLS}"),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from effres_core.model import hub

    tmp = tmp_path_factory.mktemp("comfyui_e2e")
    pack = tmp / "effres"
    pack.symlink_to(ROOT, target_is_directory=True)  # links into custom_nodes/ under the name "effres"
    inputs = tmp / "input"
    inputs.mkdir()  # empty, as in a fresh install: the pack copies its example images in
    weights = ""
    if not (hub.BUNDLED_DEFAULT / hub.WEIGHTS_NAME).is_file():
        from effres_core.model.net import EffResNet

        torch.manual_seed(0)
        weights = str(hub.save_pretrained(EffResNet(patch_size=32, width=0.25).eval(), tmp / "tiny"))
    return {"tmp": tmp, "pack": pack, "inputs": inputs, "weights": weights}


def run_workflow(setup, name: str, edit=None, timeout: int = 900, source: Path = API_DIR, packs=(),
                 python: str | None = None, wrapper: Path | None = None, comfyui_dir: str | None = None) -> dict:
    """Run ``workflows/api/<name>.json`` (after ``edit``); returns ``{node id: ui output}``."""
    workflow = json.loads((source / f"{name}.json").read_text())
    for node in workflow.values():
        if node["class_type"] == "EffResLoader" and setup["weights"]:
            node["inputs"]["hub_id"] = setup["weights"]
    if edit:
        edit(workflow)
    path = setup["tmp"] / f"{name}.json"
    path.write_text(json.dumps(workflow))
    python = python or os.environ.get("COMFYUI_PYTHON", sys.executable)
    cmd = [python] + ([str(wrapper)] if wrapper else []) + [str(TOOLS / "run_workflow.py"), str(path),
                                                            "--pack", str(setup["pack"]),
                                                            "--pack", str(TOOLS / "tiny_sd_testnodes"),
                                                            "--input-dir", str(setup["inputs"])]
    for extra in packs:
        cmd += ["--pack", str(extra)]
    env = dict(os.environ, COMFYUI_DIR=comfyui_dir or COMFYUI_DIR)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "effres: node" not in log, "a node failed to load:\n" + log[-4000:]
    outputs = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            outputs[row["node"]] = row["output"]
    return outputs


def test_every_shipped_workflow_is_tested():
    tested = {"score_and_filter", "enhance", "guidance", "segs_filter", "best_of"}
    assert {p.stem for p in API_DIR.glob("*.json")} == tested


def test_score_and_filter(setup):
    out = run_workflow(setup, "score_and_filter")
    score_text = out["6"]["text"][0]
    assert score_text.count("#") == 2, score_text  # the sharp face and its 4x-upscaled copy
    assert "kept" in out["7"]["text"][0]
    assert out["8"]["images"], "the kept branch produced no preview"


def test_enhance(setup):
    out = run_workflow(setup, "enhance")
    assert re.search(r"#0: (\d\.\d{3} -> \d\.\d{3}|no usable face)", out["4"]["text"][0]), out["4"]
    assert out["5"]["images"]


def final_ratio(out: dict) -> float:
    match = re.search(r"ratio (\d\.\d+)", out["7"]["text"][0])
    assert match, out["7"]
    return float(match.group(1))


def test_guidance(setup):
    """The graph as shipped (512 px), then a smaller copy at two scales to compare final scores."""
    out = run_workflow(setup, "guidance")
    assert out["8"]["images"] and "ratio" in out["7"]["text"][0], out
    scores = {}
    for scale in (0.0, 0.3):
        def edit(workflow, scale=scale):
            workflow["3"]["inputs"]["scale"] = scale
            workflow["4"]["inputs"].update(width=256, height=256)
            workflow["5"]["inputs"]["steps"] = 4
        scores[scale] = final_ratio(run_workflow(setup, "guidance", edit))
    print("final ratio by guidance scale (256 px, 4 steps):", scores)
    if not setup["weights"]:  # only a trained model is expected to reward sharpness reliably
        assert scores[0.3] > scores[0.0], scores


def test_segs_filter(setup):
    """The shipped two-face image: the soft face is kept for the detailer, the sharp one is not."""
    out = run_workflow(setup, "segs_filter")
    text = out["4"]["text"][0]
    lines = [line for line in text.splitlines() if " at (" in line]
    assert len(lines) == 2, text
    soft, sharp = sorted(lines, key=lambda line: float(re.search(r"ratio (\d\.\d+)", line).group(1)))
    assert soft.endswith("-> kept") and sharp.endswith("-> rejected"), text
    assert "kept 1 of 2" in text
    assert out["6"]["images"], out


def test_best_of(setup):
    out = run_workflow(setup, "best_of")
    text = out["6"]["text"][0]
    assert text.startswith("best: #1"), text  # the sharp original beats its 2x-upscaled copy
    assert text.count(" face 0:") == 2, text
    assert out["7"]["images"] and len(out["8"]["images"]) == 2, out


@pytest.mark.skipif(not IMPACT_PACK_DIR, reason="set IMPACT_PACK_DIR (and IMPACT_PYTHON) to run Impact Pack's Detailer")
def test_impact_pack_detailer_on_filtered_segs(setup):
    """Impact Pack's DetailerForEach details the SEGS the effres filter kept (tiny random model): the
    soft face (right half) changes, the sharp face (left half) is left untouched."""
    import numpy as np
    from PIL import Image

    comfyui_dir = os.environ.get("IMPACT_COMFYUI_DIR", COMFYUI_DIR)  # a ComfyUI copy for Impact Pack's venv
    out = run_workflow(setup, "impact_detailer", source=E2E_DIR, packs=[IMPACT_PACK_DIR, E2E_DIR / "effres_e2e_testnodes"],
                       python=os.environ.get("IMPACT_PYTHON"), wrapper=E2E_DIR / "run_with_server.py",
                       comfyui_dir=comfyui_dir)
    assert "kept 1 of 2" in out["4"]["text"][0], out
    saved = out["8"]["images"][0]
    result = np.asarray(Image.open(Path(comfyui_dir) / "output" / saved["subfolder"] / saved["filename"]).convert("RGB"))
    source = np.asarray(Image.open(setup["inputs"] / "effres_example_two_faces.jpg").convert("RGB"))
    change = np.abs(result.astype(int) - source.astype(int))
    assert change[:, :512].max() <= 1, "the sharp face was changed"
    assert change[:, 512:].mean() > 1, "the soft face was not detailed"
