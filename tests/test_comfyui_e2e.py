"""The API workflows in a real ComfyUI, in-process, on the CPU (skipped unless ``COMFYUI_DIR`` is set).

    COMFYUI_DIR=<unpacked ComfyUI> COMFYUI_PYTHON=<its venv python> pytest tests/test_comfyui_e2e.py

Uses ``../shared/tools/comfyui-e2e/run_workflow.py`` (or ``EFFRES_COMFYUI_TOOLS``) and its
``tiny_sd_testnodes`` for the graph that samples. Until the bundled default model ships, the
loaders get a tiny random model (the graphs then prove wiring and gradient flow, not quality).
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
FACE = ROOT.parent / "shared" / "data" / "faces" / "val" / "real_pyfeat_0-f1-su-ph.jpg"
API_DIR = ROOT / "workflows" / "api"

pytestmark = [
    pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to an unpacked ComfyUI to run the e2e tests"),
    pytest.mark.skipif(not (TOOLS / "run_workflow.py").is_file(), reason=f"no run_workflow.py in {TOOLS}"),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from PIL import Image

    from effres_core.model import hub

    tmp = tmp_path_factory.mktemp("comfyui_e2e")
    pack = tmp / "effres"
    pack.symlink_to(ROOT, target_is_directory=True)  # links into custom_nodes/ under the name "effres"
    inputs = tmp / "input"
    inputs.mkdir()
    if FACE.is_file():
        image = Image.open(FACE).convert("RGB")
    else:  # no shared data: any picture will do to prove the wiring
        image = Image.fromarray((torch.rand(512, 512, 3) * 255).byte().numpy())
    for folder in (inputs, Path(COMFYUI_DIR) / "input"):  # the tool's --input-dir is not applied everywhere
        folder.mkdir(exist_ok=True)
        image.save(folder / "effres_face.png")
    weights = ""
    if not (hub.BUNDLED_DEFAULT / hub.WEIGHTS_NAME).is_file():
        from effres_core.model.net import EffResNet

        torch.manual_seed(0)
        weights = str(hub.save_pretrained(EffResNet(patch_size=32, width=0.25).eval(), tmp / "tiny"))
    return {"tmp": tmp, "pack": pack, "inputs": inputs, "weights": weights}


def run_workflow(setup, name: str, edit=None, timeout: int = 900) -> dict:
    """Run ``workflows/api/<name>.json`` (after ``edit``); returns ``{node id: ui output}``."""
    workflow = json.loads((API_DIR / f"{name}.json").read_text())
    for node in workflow.values():
        if node["class_type"] == "EffResLoader" and setup["weights"]:
            node["inputs"]["hub_id"] = setup["weights"]
    if edit:
        edit(workflow)
    path = setup["tmp"] / f"{name}.json"
    path.write_text(json.dumps(workflow))
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    cmd = [python, str(TOOLS / "run_workflow.py"), str(path), "--pack", str(setup["pack"]),
           "--pack", str(TOOLS / "tiny_sd_testnodes"), "--input-dir", str(setup["inputs"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "effres: node" not in log, "a node failed to load:\n" + log[-4000:]
    outputs = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            outputs[row["node"]] = row["output"]
    return outputs


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
