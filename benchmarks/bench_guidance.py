"""Time and peak memory of one guided step of EffResGuidanceCallback.

Builds, from configs and with random weights (no downloads), a Stable Diffusion VAE of the real
size (the SD 1.x/2.x/SDXL AutoencoderKL layout) and a tiny UNet, and measures the callback alone
(estimate x0, decode, score, backward through the VAE, move the latents) for several decode
sizes. Each setting runs in a fresh subprocess so its peak memory is its own.

    python benchmarks/bench_guidance.py                       # 512 px, CPU, several caps
    python benchmarks/bench_guidance.py --size 1024 --device cuda --caps none 512

CPU: peak resident memory growth over the loaded models (ru_maxrss). CUDA: torch's peak
allocated memory during the step.
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


def real_size_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=512,
                         scaling_factor=0.18215).eval()


def one_setting(size: int, cap: int | None, device: str, scorer_patch: int, checkpointing: bool, repeats: int) -> dict:
    import resource

    import torch
    from diffusers import DDIMScheduler

    from effres_core.integrations.diffusers import EffResGuidanceCallback
    from effres_core.model.net import EffResNet

    torch.manual_seed(0)
    vae = real_size_vae().to(device)
    scorer = EffResNet("mobilenet_v2", patch_size=scorer_patch).eval().to(device)  # real-size scorer, random weights
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    scheduler.set_timesteps(20)

    class Pipe:  # what the callback reads from a pipeline
        def __init__(self):
            self.vae, self.scheduler, self.vae_scale_factor, self.num_timesteps = vae, scheduler, 8, 20

    pipe = Pipe()
    callback = EffResGuidanceCallback(scorer, scale=0.05, max_decode_size=cap, n_patches=25,
                                      checkpointing=checkpointing)
    callback.attach(pipe)
    latents = torch.randn(1, 4, size // 8, size // 8, device=device)
    eps = torch.randn_like(latents)
    with torch.no_grad():  # as diffusers does; also warms up the kernels
        vae.decode(latents[..., :8, :8] / 0.18215)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(repeats):
        with torch.no_grad():
            t = scheduler.timesteps[10 + i]
            new = scheduler.step(eps, t, latents, return_dict=False)[0]
            start = time.perf_counter()
            callback(pipe, 10 + i, t, {"latents": new})
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"size": size, "max_decode_size": cap, "checkpointing": checkpointing, "device": device,
           "seconds_per_step": min(times), "steps_timed": repeats, "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_rss_growth_mib"] = (peak - base) / 1024  # ru_maxrss is in KiB on Linux
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (latents: size/8)")
    parser.add_argument("--caps", nargs="+", default=["256", "384", "none"], help="max_decode_size values")
    parser.add_argument("--checkpointing", action="store_true", help="also run each cap with VAE checkpointing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scorer-patch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", default=None, help="append results to this JSON-lines file")
    parser.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._one:  # child process: one setting
        size, cap, ckpt = json.loads(args._one)
        print(json.dumps(one_setting(size, cap, args.device, args.scorer_patch, ckpt, args.repeats)))
        return 0
    settings = [(args.size, None if c == "none" else int(c), ck) for c in args.caps
                for ck in ((False, True) if args.checkpointing else (False,))]
    for setting in settings:
        proc = subprocess.run([sys.executable, __file__, "--device", args.device, "--scorer-patch",
                               str(args.scorer_patch), "--repeats", str(args.repeats), "--_one", json.dumps(setting)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{setting}: failed\n{proc.stderr[-2000:]}")
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        mem = result.get("peak_mib", result.get("peak_rss_growth_mib"))
        print(f"size {result['size']} cap {result['max_decode_size']} ckpt {result['checkpointing']}: "
              f"{result['seconds_per_step']:.2f} s/step, peak memory +{mem:.0f} MiB ({result['device']})", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
