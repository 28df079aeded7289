"""How fast does effres score a face? Seconds per 1024x1024 portrait, end to end, and patches/s.

    python benchmarks/bench_score.py                       # both backbones, CPU (+ CUDA when present)
    python benchmarks/bench_score.py --threads 2 --repeats 5 --backbones mobilenet_v2
    python benchmarks/bench_score.py --variants            # also compare memory formats and bf16

End to end = what ``EffRes.score_rgb`` does for one image: face detection (``--detectors``:
the old offline default Haar and the new one, MTCNN, side by side), the mask (ellipse), ~100 patches, the network in chunks, the median and the heat map.
Weights are random: speed does not depend on them. The portrait is ../shared's 512 px validation
face upscaled to the requested size; without ../shared a synthetic image is used with
``detector="whole"`` (so detection is not timed). Timings are medians over ``--repeats`` runs
after one warm-up run.

On a shared CPU, wall times mostly measure the other programs. The table also gives CPU seconds
and an idle-core estimate from them; for those to count work only, keep OpenMP threads from
spinning while they wait: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_score.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from effres_core.measure.faces import expand_box, get_detector  # noqa: E402
from effres_core.measure.masks import get_masker  # noqa: E402
from effres_core.model.net import EffResNet  # noqa: E402
from effres_core.measure.scorer import EffRes  # noqa: E402

REAL_FACE = ROOT.parent / "shared" / "data" / "faces" / "val" / "real_pyfeat_0-f1-su-ph.jpg"
#: The patch size each backbone is trained with (train/configs): light model 128, the paper's 256.
PATCH_SIZE = {"mobilenet_v2": 128, "resnet50": 256}


def portrait(size: int) -> tuple[np.ndarray, str]:
    """A ``size x size`` RGB portrait and the detector that finds its face."""
    from PIL import Image

    if REAL_FACE.is_file():
        img = Image.open(REAL_FACE).convert("RGB").resize((size, size), Image.BICUBIC)
        return np.asarray(img), "haar"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "whole"


def timed(fn, repeats: int, sync=lambda: None) -> tuple[float, float]:
    """Median ``(wall seconds, CPU seconds of this process)`` of ``fn()`` over ``repeats`` runs
    after one warm-up. CPU seconds (all threads) do not grow when other programs share the
    cores, so on a busy machine ``cpu / threads`` estimates the wall time on idle cores."""
    fn()
    sync()
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def bench_backbone(backbone: str, device: torch.device, rgb: np.ndarray, detector: str, repeats: int,
                   chunk_size: int | None, bf16: bool = False, contiguous_weights: bool = False) -> dict:
    torch.manual_seed(0)
    p = PATCH_SIZE[backbone]
    net = EffResNet(backbone, patch_size=p).eval()
    model = EffRes(net, detector=detector, masker="ellipse", device=device, chunk_size=chunk_size)
    if contiguous_weights:  # undo EffRes's channels-last default on CPU, to see what it buys
        model.inference_net.to(memory_format=torch.contiguous_format)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    # Stages on their own: detection and mask (CPU, numpy/OpenCV), then the network.
    detect, _ = get_detector(detector, str(device))
    masker, _ = get_masker("ellipse", str(device), detector)
    box = detect(rgb)[0]
    crop = expand_box(box, *rgb.shape[:2], 0.5) if detector != "whole" else box
    t_detect, _ = timed(lambda: detect(rgb), repeats)
    sub = rgb[crop.y0:crop.y1, crop.x0:crop.x1]
    t_mask, _ = timed(lambda: masker(sub, box), repeats)

    with _autocast(device, bf16):
        result = model.score_rgb(rgb)
        t_total, cpu_total = timed(lambda: model.score_rgb(rgb), repeats, sync)

    n = model.chunk_size
    batch = torch.rand(n, 3, p, p, device=device)

    def forward():
        with torch.inference_mode(), _autocast(device, bf16):
            model.inference_net(batch)

    t_batch, cpu_batch = timed(forward, repeats, sync)
    threads = torch.get_num_threads()
    if device.type == "cpu":  # idle-core estimates, see timed()
        est_total, est_pps = cpu_total / threads, n * threads / cpu_batch
    else:
        est_total, est_pps = t_total, n / t_batch
    return {"backbone": backbone, "patch": p, "device": str(device), "chunk": n, "total": t_total, "detect": t_detect,
            "cpu_total": cpu_total, "est_total": est_total, "est_pps": est_pps,
            "mask": t_mask, "patches_used": sum(f.patches_used for f in result.faces),
            "patches_per_s": n / t_batch, "ratio": result.ratio}


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    header = (f"| {'backbone':<12} | {'patch':>5} | {'device':<6} | {'variant':<22} | {'chunk':>5} | {'s / face':>8} | "
              f"{'cpu-s / face':>12} | {'idle est. s':>11} | {'detect s':>8} | {'mask s':>7} | {'patches':>7} | "
              f"{'patches/s':>9} | {'idle est. p/s':>13} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['backbone']:<12} | {r['patch']:>5} | {r['device']:<6} | {r.get('variant', 'default'):<22} | "
              f"{r['chunk']:>5} | "
              f"{r['total']:>8.3f} | {r['cpu_total']:>12.3f} | {r['est_total']:>11.3f} | {r['detect']:>8.3f} | "
              f"{r['mask']:>7.3f} | {r['patches_used']:>7} | {r['patches_per_s']:>9.1f} | {r['est_pps']:>13.1f} |")
    print("s / face, patches/s: measured wall clock. cpu-s: CPU seconds of all threads. idle est.: the same "
          "from CPU time (cpu-s / threads), what idle cores would give; use it when the CPU is shared.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--size", type=int, default=1024, help="portrait side in pixels (default 1024)")
    ap.add_argument("--backbones", nargs="+", default=list(PATCH_SIZE), choices=list(PATCH_SIZE))
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="patches per forward pass (default: EffRes's, 16 on CPU and 64 on GPU)")
    ap.add_argument("--detectors", nargs="+", default=["haar", "mtcnn"], choices=["haar", "mtcnn", "retinaface"],
                    help="face detectors to time (default: haar, the old offline default, and mtcnn, the new one)")
    ap.add_argument("--variants", action="store_true",
                    help="also time the plain layout (contiguous weights, chunk 64) and bf16 autocast")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rgb, detector = portrait(args.size)
    detectors = args.detectors if detector != "whole" else ["whole"]
    cpu_flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(f"effres score benchmark: {args.size}x{args.size} portrait, detectors {', '.join(detectors)}, masker ellipse, "
          f"{args.repeats} repeats")
    import os

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, avx512_bf16: {'avx512_bf16' in cpu_flags}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load average "
          f"{os.getloadavg()[0]:.1f}")

    rows = []
    for device in map(torch.device, devices):
        for backbone in args.backbones:
            variants = [("default", {})]
            if args.variants:
                variants += [("contiguous, chunk 64", {"contiguous_weights": True, "chunk_size": 64}),
                             ("bf16 autocast", {"bf16": True})]
            for (name, kwargs), detector in ((v, d) for v in variants for d in detectors):
                kwargs = {"chunk_size": args.chunk_size, **kwargs}
                row = bench_backbone(backbone, device, rgb, detector, args.repeats, **kwargs)
                row["variant"] = f"{name}, {detector}"
                rows.append(row)
                print(f"  {backbone} {device} {name}: {row['total']:.3f} s/face wall, {row['cpu_total']:.3f} "
                      f"cpu-s/face", file=sys.stderr, flush=True)
    print_table(rows, "Seconds per face (end to end) and network throughput (random weights):")
    return 0


if __name__ == "__main__":
    sys.exit(main())
