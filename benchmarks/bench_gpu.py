"""GPU throughput: faces/s at 1024 px with the default model, fp32 vs bf16/fp16, several batch sizes.

    python benchmarks/bench_gpu.py                                  # cuda:0, 256 faces, batch 64/256/1024
    python benchmarks/bench_gpu.py --faces 512 --batch-sizes 256 512 --precisions fp32 bf16

Two numbers per setting: ``network`` times the forward passes alone on patches already on the GPU
(the ceiling), ``end to end`` runs :class:`~effres_core.measure.batch.BatchScorer` on decoded
1024x1024 face crops (``detector="whole"``, ellipse mask: about 60 patches per face), so mask,
patch cutting, pinned copies and pooling are in. Detection is not timed (RetinaFace or Haar
throughput is its own question). Needs a CUDA device; prints what it measured, nothing else.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effres_core.measure.batch import BatchScorer  # noqa: E402
from effres_core.measure.scorer import EffRes  # noqa: E402

FACE = ROOT / "examples" / "faces" / "portrait_sharp.jpg"


def crops(n: int, size: int) -> list[np.ndarray]:
    from PIL import Image

    img = Image.open(FACE).convert("RGB").resize((size, size), Image.BICUBIC)
    base = np.asarray(img)
    rng = np.random.default_rng(0)
    return [np.clip(base.astype(np.int16) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
            for _ in range(n)]


def network_rate(model: EffRes, batch: int, precision: str, repeats: int = 20) -> float:
    p = model.patch_size
    x = torch.rand(batch, 3, p, p, device=model.device).contiguous(memory_format=torch.channels_last)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    net = model.inference_net.to(memory_format=torch.channels_last)
    ctx = torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cuda", enabled=False)
    with torch.inference_mode(), ctx:
        for _ in range(3):
            net(x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            net(x)
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--faces", type=int, default=256)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    model = EffRes.from_pretrained(device=args.device, detector="whole", masker="ellipse")
    images = crops(args.faces, args.size)
    print(f"{torch.cuda.get_device_name(model.device)}, torch {torch.__version__}, {args.faces} faces of "
          f"{args.size} px, default model")
    print("| precision | batch (patches) | network patches/s | end-to-end faces/s | patches/face | "
          "max |ratio - fp32| |")
    print("|---|---|---|---|---|---|")
    reference = None
    for precision in args.precisions:
        for bs in args.batch_sizes:
            pps = network_rate(model, bs, precision)
            scorer = BatchScorer(model, batch_size=bs, workers=args.workers, precision=precision, keep_maps=False)
            list(scorer.score_arrays(images[: max(4, args.workers or 4)]))  # warm-up: cuDNN picks kernels
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            results = [it.result for it in scorer.score_arrays(images)]
            torch.cuda.synchronize()
            fps = len(images) / (time.perf_counter() - t0)
            ratios = np.array([r.ratio for r in results], dtype=float)
            if reference is None:
                reference = ratios
            per_face = np.mean([sum(f.patches_used for f in r.faces) for r in results])
            print(f"| {precision} | {bs} | {pps:.0f} | {fps:.1f} | {per_face:.0f} | "
                  f"{np.nanmax(np.abs(ratios - reference)):.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
