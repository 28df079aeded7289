"""Cold start: wall time of one ``effres score IMAGE`` process, this checkout against a baseline commit,
interleaved in one run, plus where the time goes (imports, model build, BatchNorm folding, detector).

    python benchmarks/bench_startup.py                      # baseline: the merge-base with main
    python benchmarks/bench_startup.py --baseline HEAD~5 --rounds 5 --image examples/faces/photo_sharp.jpg

The baseline tree is exported with ``git archive`` into a temporary folder, so both run from source
with the same Python, the same files and the same load. Rounds alternate baseline and current, so
a busy shared machine slows both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PHASES = r'''
import json, sys, time
t = time.perf_counter(); out = {}
def lap(name):
    global t
    now = time.perf_counter(); out[name] = now - t; t = now
import numpy, PIL.Image; lap("numpy, PIL")
import torch; lap("import torch")
from effres_core.model import hub; from effres_core.measure.scorer import EffRes; lap("import effres_core")
net = hub.load_pretrained(None); lap("build + load weights")
from effres_core.model.net import fold_batchnorm
fold_batchnorm(net); lap("fold BatchNorm")
out["torchvision imported"] = "torchvision" in sys.modules
model = EffRes(net, device="cpu", detector="haar", masker="ellipse"); lap("EffRes() (folds again)")
model._components(); lap("detector set-up")
from effres_core.measure.imageio import load_image
rgb = load_image(sys.argv[1]); lap("load image")
import cv2; from effres_core.measure import faces
faces.detect_haar(rgb); lap("first Haar detection (cascades)")
model.score_rgb(rgb); lap("first score_rgb")
print(json.dumps(out))
'''


def export_tree(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def cold_cli(tree: Path, image: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "effres_core", "score", image, "--quiet", "--detector", "haar",
                    "--masker", "ellipse", "--device", "cpu"], cwd=tree, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def phases(tree: Path, image: str) -> dict:
    import json

    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", PHASES, image], cwd=tree, env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=None, help="git ref of the old code (default: merge-base with main)")
    ap.add_argument("--image", default=str(ROOT / "examples" / "faces" / "photo_sharp.jpg"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    ref = args.baseline or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], check=True,
                                          capture_output=True, text=True).stdout.strip()
    image = str(Path(args.image).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"baseline " + ref[:10]: export_tree(ref, Path(tmp)), "this checkout": ROOT}
        walls = {name: [] for name in trees}
        split = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                walls[name].append(cold_cli(tree, image))
                split[name].append(phases(tree, image))
                print(f"  {name}: {walls[name][-1]:.2f} s", file=sys.stderr, flush=True)
    print(f"Cold `effres score {Path(image).name}` (one process, CPU, Haar + ellipse), median of {args.rounds} "
          f"interleaved rounds; load average {os.getloadavg()[0]:.1f}")
    names = list(trees)
    print(f"| {'':34} | " + " | ".join(f"{n:>20}" for n in names) + " |")
    print("|" + "-" * 36 + "|" + "|".join("-" * 22 for _ in names) + "|")
    print(f"| {'wall time, whole CLI (s)':34} | " + " | ".join(f"{statistics.median(walls[n]):>20.2f}" for n in names)
          + " |")
    for key in split[names[0]][0]:
        if key == "torchvision imported":
            cells = [str(split[n][0][key]) for n in names]
        else:
            cells = [f"{statistics.median(s[key] for s in split[n]):.2f}" for n in names]
        print(f"| {key:34} | " + " | ".join(f"{c:>20}" for c in cells) + " |")
    base, new = (statistics.median(walls[n]) for n in names)
    print(f"this checkout / baseline: {new / base:.2f} of the wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
