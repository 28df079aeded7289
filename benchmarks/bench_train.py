"""How fast does effres train? Patches per second of one optimizer step, per backbone, patch size
and adversarial mode, on this CPU (and on CUDA when present).

    python benchmarks/bench_train.py --quick               # small batches, one timed step per cell
    python benchmarks/bench_train.py                       # the configs' micro-batches, 3 timed steps
    python benchmarks/bench_train.py --backbones mobilenet_v2 --patch-sizes 128 --modes regular pgd3

A step is exactly what ``train/run.py`` does per micro-batch (``Trainer.micro_step``: the attack
with BatchNorm frozen, the clean and the adversarial forward/backward, bf16 autocast and
channels-last on CUDA) plus the Adam update. Modes: ``regular`` (no adversarial step), ``fgsm``
(one L2 step), ``pgd3`` and ``pgd10`` (the paper's 10 steps). Weights are random: speed does not
depend on them. The sampler line times ``train.data.make_batch`` (prescale, degradation, nuisances,
patches) in one process, i.e. what one DataLoader worker delivers.

Each cell reports the wall-clock rate and, on CPU, the rate estimated from this process's CPU time
(``batch / (cpu_seconds / threads)``): on a machine shared with other jobs the wall rate is what you
got, the CPU-time rate is about what idle cores would give.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from effres_core.model.net import EffResNet  # noqa: E402
from train import run as train_run  # noqa: E402
from train.data import FaceSample, SampleSettings, make_batch  # noqa: E402

MODES = {"regular": ("none", 0), "fgsm": ("fgsm", 1), "pgd3": ("pgd", 3), "pgd10": ("pgd", 10)}
#: The micro-batches of the paper (and of train/configs/paper.yaml): 16 patches of 128, 4 of 256.
PAPER_MICRO_BATCH = {128: 16, 256: 4}


def bare_trainer(net: torch.nn.Module, device: torch.device, mode: str, patch_size: int,
                 optimizer: torch.optim.Optimizer) -> train_run.Trainer:
    """A :class:`train.run.Trainer` holding only what ``micro_step`` needs (no data, no run folder)."""
    adversarial, steps = MODES[mode]
    t = train_run.Trainer.__new__(train_run.Trainer)
    t.config = {**train_run.DEFAULTS, "adversarial": adversarial, "pgd_steps": max(1, steps),
                "pgd_step_size": 15.0 if patch_size <= 128 else 30.0,  # the paper's values
                "bf16": device.type == "cuda", "channels_last": True}
    t.device, t.net, t.model, t.accum, t.world_size, t.rank = device, net, net, 1, 1, 0
    t.optimizer = optimizer
    return t


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(trainer, x, y, repeats: int) -> tuple[float, float]:
    """Median (wall, process CPU) seconds of one optimizer step over ``repeats`` steps."""
    walls, cpus = [], []
    for _ in range(repeats):
        _sync(trainer.device)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.micro_step(x, y)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        _sync(trainer.device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def bench_cell(backbone: str, patch: int, device: torch.device, modes: list[str], batch: int,
               repeats: int) -> list[dict]:
    torch.manual_seed(0)
    net = EffResNet(backbone, patch_size=patch).to(device).to(memory_format=torch.channels_last).train()
    x = torch.rand(batch, 3, patch, patch, device=device)
    y = torch.rand(batch, device=device) * 0.9 + 0.1
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    # Warm-up (kernel selection, allocator, Adam's lazy state): one regular and one attacked step.
    time_step(bare_trainer(net, device, "regular", patch, optimizer), x, y, 1)
    time_step(bare_trainer(net, device, "fgsm", patch, optimizer), x, y, 1)
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    rows = []
    for mode in modes:
        wall, cpu = time_step(bare_trainer(net, device, mode, patch, optimizer), x, y, repeats)
        row = {"device": device.type, "backbone": backbone, "patch": patch, "mode": mode, "batch": batch,
               "step_s": wall, "patches_per_s": batch / wall}
        if threads:
            row["cpu_patches_per_s"] = batch / max(cpu / threads, 1e-9)
        rows.append(row)
        print(_format_row(row), flush=True)
    return rows


def bench_sampler(patch: int, batches: int) -> float:
    """Patches/s of ``make_batch`` (one process, one thread) on a synthetic 768 px face."""
    rng = np.random.default_rng(0)
    face = FaceSample("synthetic", rng.integers(0, 256, (768, 640, 3), dtype=np.uint8),
                      np.ones((768, 640), np.float32))
    s = SampleSettings(patch_size=patch, stride=128, prescale_height=(max(256, patch), 1024))
    size = PAPER_MICRO_BATCH.get(patch, 8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        make_batch([face], 0, size, 0, s)
        t0 = time.perf_counter()
        for i in range(batches):
            make_batch([face], i + 1, size, 0, s)
        return size * batches / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


HEADER = f"{'device':6} {'backbone':12} {'patch':>5} {'mode':7} {'batch':>5} {'s/step':>8} {'patches/s':>10} {'idle-CPU est.':>13}"


def _format_row(r: dict) -> str:
    est = f"{r['cpu_patches_per_s']:13.2f}" if "cpu_patches_per_s" in r else f"{'-':>13}"
    return (f"{r['device']:6} {r['backbone']:12} {r['patch']:5d} {r['mode']:7} {r['batch']:5d} "
            f"{r['step_s']:8.2f} {r['patches_per_s']:10.2f} {est}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, one timed step per cell")
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--patch-sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    parser.add_argument("--batch", type=int, default=0, help="micro-batch (default: the paper's, 2 with --quick)")
    parser.add_argument("--repeats", type=int, default=0, help="timed steps per cell (default 3, 1 with --quick)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-sampler", dest="sampler", action="store_false", help="skip the data sampler timing")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads" +
          (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "") +
          f"; {repeats} timed step(s) per cell after a warm-up")
    print(HEADER)
    for name in devices:
        device = torch.device(name)
        for backbone in args.backbones:
            for patch in args.patch_sizes:
                batch = args.batch or (2 if args.quick else PAPER_MICRO_BATCH.get(patch, 8))
                if device.type == "cuda" and not args.batch and not args.quick:
                    batch *= 8  # a GPU needs bigger batches to be busy; accumulation keeps the recipe
                bench_cell(backbone, patch, device, args.modes, batch, repeats)
    if args.sampler:
        for patch in args.patch_sizes:
            rate = bench_sampler(patch, 2 if args.quick else 8)
            print(f"sampler (one worker, 1 thread), patch {patch}: {rate:.1f} patches/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
