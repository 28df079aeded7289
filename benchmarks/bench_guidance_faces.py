"""Face-aware guidance against whole-image guidance: time and peak memory of one guided step, and
where the latent change lands.

The decoder is the e2e tool's tiny test model's VAE (``TinySDTestModel``: ch 32, ch_mult
1-1-1-1, one res block per level, 4 latent channels), rebuilt with diffusers' AutoencoderKL from
the same config with random weights (no downloads, no ComfyUI needed); ``--vae sd`` uses a
real-size SD VAE layout instead. The scorer is the bundled default model. One off-centre face
(its box given, as a mask or a detection would give it) at 512 and 1024 px. Modes:

* ``faces``: :func:`sharpness_gradient_windows` over the face's latent window (EffResGuidance
  ``region="faces"``);
* ``whole cap N``: :func:`sharpness_gradient` on the centred ``N`` px window (``region="whole image"``,
  ``max_decode_size=N``); ``whole`` = no cap.

Also timed: the face search on the first guided step (a no-gradient decode of the whole image
plus Haar detection). Each setting runs in a fresh subprocess so its peak memory is its own
(CPU: growth of ru_maxrss over the loaded models; CUDA: torch's peak allocation). On a shared
CPU the wall time varies with the load; the process CPU time next to it does much less.

    python benchmarks/bench_guidance_faces.py                  # 512 and 1024 px, CPU, one thread
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny_test_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                         block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32).eval()


def sd_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32).eval()


def face_box(size: int) -> tuple[int, int, int, int]:
    """An off-centre face: top right, 5/16 of the image wide (160 px at 512, 320 px at 1024)."""
    side = size * 5 // 16
    x0, y0 = size * 5 // 8, size // 8
    return x0, y0, x0 + side, y0 + side


def one_setting(size: int, mode: str, cap: int | None, vae_kind: str, device: str, repeats: int) -> dict:
    import resource

    import torch

    from effres_core import EffRes
    from effres_core.gradient.guidance import (centre_window, detect_faces, face_windows, sharpness_gradient,
                                               sharpness_gradient_windows)
    from effres_core.measure.faces import get_detector

    torch.manual_seed(0)
    vae = (tiny_test_vae() if vae_kind == "tiny" else sd_vae()).to(device).requires_grad_(False)
    net = EffRes.from_pretrained(device=device).inference_net

    def decode(z):
        return (vae.decode(z / 0.18215).sample / 2 + 0.5).clamp(0, 1)

    x0 = torch.randn(1, 4, size // 8, size // 8, device=device)
    box = face_box(size)
    patch = net.patch_size
    windows = face_windows([box], (size // 8, size // 8), margin=0.25, max_latent=(cap or 4096) // 8,
                           min_latent=-(-patch // 8))
    with torch.no_grad():
        decode(x0[..., :8, :8])  # warm-up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times, grad = [], [], None
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        if mode == "detect":  # the first guided step's extra: one plain decode and the face search
            with torch.no_grad():
                detect_faces(decode(x0), get_detector("haar")[0])
        elif mode == "faces":
            grad, _ = sharpness_gradient_windows(x0, decode, net, windows, n_patches=25)
        else:
            grad = sharpness_gradient(x0, decode, net, max_decode_size=cap, n_patches=25)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    win = windows[0] if mode == "faces" else centre_window((size // 8, size // 8),
                                                            max_latent=None if cap is None else cap // 8)
    out = {"size": size, "mode": mode, "max_decode_size": cap, "vae": vae_kind, "device": device,
           "seconds_per_step": min(times), "cpu_seconds_per_step": min(cpu_times), "repeats": repeats, "torch_threads": torch.get_num_threads(),
           "face_box": box, "decoded_window_px": [win.height * 8, win.width * 8]}
    if grad is not None:
        change = grad.abs().sum(dim=1)[0]
        fw = windows[0]
        inside = change[fw.slices].sum() / change.sum().clamp(min=1e-30)
        out["share_of_change_in_face_window"] = float(inside)
    if device.startswith("cuda"):
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_rss_growth_mib"] = (peak - base) / 1024
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--vae", choices=("tiny", "sd"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None, help="append results to this JSON-lines file")
    parser.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._one:
        import torch

        torch.set_num_threads(args.threads)
        size, mode, cap = json.loads(args._one)
        print(json.dumps(one_setting(size, mode, cap, args.vae, args.device, args.repeats)))
        return 0
    settings = []
    for size in args.sizes:
        settings += [(size, "faces", 512), (size, "whole", 512), (size, "whole", None), (size, "detect", None)]
    settings = list(dict.fromkeys(settings))
    for setting in settings:
        proc = subprocess.run([sys.executable, __file__, "--vae", args.vae, "--device", args.device, "--threads",
                               str(args.threads), "--repeats", str(args.repeats), "--_one", json.dumps(setting)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{setting}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        mem = r.get("peak_mib", r.get("peak_rss_growth_mib"))
        name = {"faces": "faces", "detect": "face search (first step)"}.get(r["mode"], "whole") + \
            (f" cap {r['max_decode_size']}" if r["mode"] != "detect" and r["max_decode_size"] else "")
        share = r.get("share_of_change_in_face_window")
        print(f"{r['size']} px, {name:<28} decode {r['decoded_window_px'][0]}x{r['decoded_window_px'][1]}: "
              f"{r['seconds_per_step']:.2f} s/step ({r['cpu_seconds_per_step']:.2f} CPU s), peak +{mem:.0f} MiB"
              + (f", {100 * share:.1f}% of the latent change in the face window" if share is not None else ""),
              flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
