"""Multi-process training: ``torchrun`` with 2 CPU processes and the gloo backend.

Checks that both ranks finish, that rank 0 alone writes the run folder, and that the sharding is
right: two ranks with micro-batch 4 and effective batch 16 take the same patches per optimizer
step as one process accumulating four micro-batches, so (without the adversarial step, whose
attack reads each rank's own BatchNorm statistics) the weights must agree.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"
TRAIN_FILES = ["real_pyfeat_0-f15-hao-ph.jpg", "real_pyfeat_15-f13-anc-ph.jpg", "openpeople_P001_studio_portrait.jpg"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/data/faces is not available")
    from PIL import Image

    folder = tmp_path_factory.mktemp("faces")
    for name in TRAIN_FILES:
        img = Image.open(SHARED_FACES / "train" / name).convert("RGB")
        img.thumbnail((256, 256), Image.LANCZOS)
        img.save(folder / name, quality=95)
    return folder


def _args(data: Path, out: Path, adversarial: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--device", "cpu", "--backbone", "tiny", "--imagenet", "false",
            "--patch-size", "32", "--stride", "32", "--window-patches", "2", "--micro-batch", "4",
            "--effective-batch", "16", "--patches-per-epoch", "1600", "--max-steps", "2", "--workers", "0",
            "--adversarial", adversarial, "--pgd-steps", "1", "--pgd-step-size", "15", "--channels-last", "false",
            "--prescale-height", "64", "192", "--seed", "1"]


def _torchrun(data: Path, out: Path, adversarial: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(ROOT / "train" / "run.py"), *_args(data, out, adversarial)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "metrics.csv").open()))


def test_two_ranks_train_and_rank0_checkpoints(train_dir, tmp_path):
    out = tmp_path / "ddp"
    proc = _torchrun(train_dir, out, "pgd")
    assert proc.stderr.count("done at step 2") == 1  # rank 0 reports; rank 1 finished too (exit code 0)
    state = torch.load(out / "last" / "state.pt", weights_only=True)
    assert state["step"] == 2
    assert json.loads((out / "last" / "config.json").read_text())["trained_steps"] == 2
    rows = _rows(out)
    assert [int(r["step"]) for r in rows] == [1, 2]  # one writer: no duplicated rows from rank 1
    assert all(float(r["adv_loss"]) == float(r["adv_loss"]) for r in rows)  # adversarial step ran (not NaN)
    assert not list(out.glob("cache/*.tmp.npz"))  # both ranks shared the face cache without leftovers


def test_two_ranks_match_one_process_with_the_same_effective_batch(train_dir, tmp_path):
    from safetensors.torch import load_file

    from effres_core.model.net import EffResNet
    from train import run as train_run

    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    _torchrun(train_dir, ddp_out, "none")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert train_run.main(_args(train_dir, single_out, "none")) == 0
    finally:
        torch.set_num_threads(threads)
        for s, h in handlers.items():
            signal.signal(s, h)
    ddp = load_file(str(ddp_out / "last" / "model.safetensors"))
    single = load_file(str(single_out / "last" / "model.safetensors"))
    assert ddp.keys() == single.keys()
    # Rank 0's BatchNorm running statistics see only its own micro-batches; the parameters see all.
    # A conv bias right before BatchNorm has a zero gradient up to rounding noise, and Adam turns
    # noise into full-size steps of either sign, so those biases are arbitrary in both runs.
    net = EffResNet(patch_size=32, width=0.25)
    layers = list(net.features)
    noise_only = {f"features.{i}.bias" for i, (a, b) in enumerate(zip(layers, layers[1:]))
                  if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d)}
    params = [k for k in ddp if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
              and k not in noise_only]
    assert noise_only and len(params) >= 5
    for k in params:
        assert torch.allclose(ddp[k], single[k], rtol=1e-4, atol=1e-5), k
