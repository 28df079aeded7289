"""Images/s of folder scoring before and after batching, side by side in one run; peak memory;
Ray Data on a local instance; resuming a 100,000-row manifest.

    python benchmarks/bench_curate.py                         # 200 mixed images, generated into /tmp
    python benchmarks/bench_curate.py --n 60 --rounds 2 --variants today batched
    python benchmarks/bench_curate.py --n 40 --variants batched --ray        # + Ray local throughput
    python benchmarks/bench_curate.py --resume-rows 100000 --n 0             # only the resume timing

The folder: ``--n`` JPEGs 512-2048 px (long side) in nested folders, made from the faces in
../shared (train and val) and examples/: sharp resizes and soft upscales, about 10% with two
faces side by side, 4% truncated files and 2% text files named .jpg. Generated once per seed.

Variants (each in its own process; only the scoring loop is timed, model loading is not):

- ``today``: what ``effres score`` did before batching: ``load_image`` + ``EffRes.score_rgb`` per
  file in one thread, torch's default threads, OpenMP's default (spinning) wait policy. This is
  the kept baseline path (``score_unbatched`` below).
- ``today-passive``: the same loop with ``OMP_WAIT_POLICY=PASSIVE`` (what the ``effres`` command
  now sets), to show how much of the gain is the wait policy alone.
- ``batched``: :class:`~effres_core.measure.batch.BatchScorer` with its defaults, PASSIVE.
- ``batched-processes``: the same with a torch DataLoader decoding in worker processes.

The files are split into ``--rounds`` slices and the variants alternate slice by slice, so load
from other programs on a shared machine falls on all of them alike. Ratios of every variant are
compared with ``today``'s on the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "faces"

VARIANTS = {
    "today": {"OMP_WAIT_POLICY": None, "mode": "unbatched"},
    "today-passive": {"OMP_WAIT_POLICY": "PASSIVE", "mode": "unbatched"},
    "batched": {"OMP_WAIT_POLICY": "PASSIVE", "mode": "batched"},
    "batched-processes": {"OMP_WAIT_POLICY": "PASSIVE", "mode": "processes"},
}


def source_faces() -> list[Path]:
    found = sorted(SHARED.glob("train/*.jpg")) + sorted(SHARED.glob("val/*.jpg"))
    found += sorted((ROOT / "examples" / "faces").glob("*.jpg"))
    if not found:
        raise SystemExit("no source faces: need ../shared/data/faces or examples/faces")
    return found


def make_dataset(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` mixed images under ``folder`` (made once; reused when the folder is complete)."""
    from PIL import Image

    done = folder / ".complete"
    if done.is_file():
        return [folder / line for line in done.read_text().split("\n") if line]
    rng = random.Random(seed)
    faces = source_faces()
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        rel = Path(f"set{i % 4}") / (f"sub{i % 3}" if i % 2 else "") / f"img{i:04d}.jpg"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        kind = rng.random()
        if kind < 0.02:
            (folder / rel).write_text("not an image")
        else:
            img = Image.open(rng.choice(faces)).convert("RGB")
            if kind < 0.12:  # two faces side by side
                other = Image.open(rng.choice(faces)).convert("RGB").resize(img.size)
                pair = Image.new("RGB", (img.width * 2, img.height))
                pair.paste(img, (0, 0))
                pair.paste(other, (img.width, 0))
                img = pair
            side = rng.randint(512, 2048)
            scale = side / max(img.size)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            if rng.random() < 0.4:  # a soft upscale from 1/2-1/4 of the size
                f = rng.uniform(0.25, 0.5)
                img = img.resize((max(1, round(size[0] * f)), max(1, round(size[1] * f))), Image.BICUBIC)
            img = img.resize(size, Image.BICUBIC)
            img.save(folder / rel, quality=90)
            if 0.96 < kind:  # truncated file
                data = (folder / rel).read_bytes()
                (folder / rel).write_bytes(data[: len(data) // 3])
        names.append(str(rel))
    done.write_text("\n".join(names) + "\n")
    return [folder / name for name in names]


# ---- the variants, run in a child process ------------------------------------------------------
def score_unbatched(model, paths) -> dict[str, float | None]:
    """The previous ``effres score`` loop: one file after another, its patches in per-face passes."""
    from effres_core.measure.imageio import ImageLoadError, load_image

    out = {}
    for p in paths:
        try:
            rgb = load_image(p)
        except ImageLoadError:
            out[str(p)] = None
            continue
        out[str(p)] = model.score_rgb(rgb, path=str(p)).ratio
    return out


def score_batched(model, paths, loader: str) -> dict[str, float | None]:
    from effres_core.measure.batch import BatchScorer

    scorer = BatchScorer(model, loader=loader, keep_maps=False)
    return {it.result.path: it.result.ratio for it in scorer.score_paths([str(p) for p in paths])}


def child(mode: str, list_file: str) -> None:
    from effres_core.measure.scorer import EffRes

    paths = [line for line in Path(list_file).read_text().split("\n") if line]
    model = EffRes.from_pretrained(device="cpu", detector="haar", masker="ellipse")
    model._components()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "unbatched":
        ratios = score_unbatched(model, paths)
    else:
        ratios = score_batched(model, paths, "processes" if mode == "processes" else "threads")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "cpu": cpu, "n": len(paths), "peak_rss_mb": peak / 1024,
                      "rss_after_load_mb": rss0 / 1024, "children_peak_mb": kids / 1024, "ratios": ratios}))


def run_variant(name: str, paths: list[Path]) -> dict:
    spec = VARIANTS[name]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OMP_WAIT_POLICY", None)
    if spec["OMP_WAIT_POLICY"]:
        env["OMP_WAIT_POLICY"] = spec["OMP_WAIT_POLICY"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(map(str, paths)))
    try:
        out = subprocess.run([sys.executable, __file__, "--child", spec["mode"], f.name], env=env, check=True,
                             capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    return json.loads(out.strip().splitlines()[-1])


# ---- Ray and resume ------------------------------------------------------------------------------
def bench_ray(paths: list[Path]) -> dict:
    import ray

    from effres_core.curate import CurateOptions, collect_inputs, curate
    from effres_core.integrations.ray import ray_score_fn

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=512 * 2**20)
    try:
        score = ray_score_fn(None, "default", "s", concurrency=1, batch_size=8, detector="haar",
                             masker="ellipse", device="cpu")
        inputs = collect_inputs([str(p) for p in paths])
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary = curate(inputs, score, CurateOptions(manifest=f"{tmp}/m.parquet", progress=False),
                             "default", "s")
            seconds = time.perf_counter() - t0
    finally:
        ray.shutdown()
    return {"n": summary.scored, "seconds": seconds}


def bench_resume(rows: int) -> dict:
    """A manifest of ``rows`` files (tiny real files, so each needs its os.stat) resumed from."""
    from effres_core.curate import CurateOptions, collect_inputs, curate, result_row  # noqa: F401
    from effres_core.curate.manifest import ManifestWriter

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")
        for k in range(rows // 1000 + 1):
            (data / f"d{k}").mkdir(parents=True)
        rel = []
        for i in range(rows):
            p = data / f"d{i // 1000}" / f"{i}.jpg"
            p.write_bytes(b"x")
            rel.append(p)
        manifest = Path(tmp, "m.jsonl")
        with ManifestWriter(manifest) as w:
            for p in rel:
                st = p.stat()
                w.write({"path": str(p), "rel": p.name, "size": st.st_size, "mtime": st.st_mtime, "ratio": 0.5,
                         "faces": [{"box": [0, 0, 10, 10], "ratio": 0.5, "patches_used": 30, "reason": None}],
                         "sha256": "0" * 64, "model": "m", "settings": "s", "n_faces": 1, "height": 10})
        t0 = time.perf_counter()
        inputs = collect_inputs([str(data)])
        t_walk = time.perf_counter() - t0

        def never(todo):
            if todo:
                raise AssertionError(f"{len(todo)} files would be scored again")
            return iter(())

        t0 = time.perf_counter()
        summary = curate(inputs, never, CurateOptions(manifest=str(manifest), resume=str(manifest),
                                                      progress=False), "m", "s")
        t_resume = time.perf_counter() - t0
    return {"rows": rows, "walk_s": t_walk, "resume_s": t_resume, "reused": summary.reused}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=2, metavar=("MODE", "LIST"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=200, help="images in the folder (default 200)")
    ap.add_argument("--limit", type=int, default=0,
                    help="time only every k-th image so that this many remain (a slow shared machine); 0 = all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="slices the variants alternate over (default 2)")
    ap.add_argument("--variants", nargs="+", default=["today", "batched"], choices=list(VARIANTS))
    ap.add_argument("--ray", action="store_true", help="also time effres curate --engine ray on a local 2-CPU Ray")
    ap.add_argument("--resume-rows", type=int, default=0, help="also time resuming a manifest of this many rows")
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine: compare the "
          f"variants with each other, not across runs)")
    if args.n:
        paths = make_dataset(Path(tempfile.gettempdir()) / f"effres_bench_curate_{args.n}_{args.seed}", args.n,
                             args.seed)
        all_paths = paths
        if args.limit and args.limit < len(paths):
            step = len(paths) / args.limit
            paths = [paths[int(i * step)] for i in range(args.limit)]
        slices = [paths[i::args.rounds] for i in range(args.rounds)]
        results = {v: [] for v in args.variants}
        for k, part in enumerate(slices):
            for v in args.variants:
                r = run_variant(v, part)
                results[v].append(r)
                print(f"  round {k + 1}/{len(slices)} {v}: {r['n']} images in {r['seconds']:.1f} s", file=sys.stderr,
                      flush=True)
        ref = {p: x for r in results[args.variants[0]] for p, x in r["ratios"].items()}
        print(f"\n{len(paths)} of a folder of {len(all_paths)} mixed images (512-2048 px, ~10% two faces, ~6% "
              f"broken), CPU, Haar + ellipse, default model, {args.rounds} interleaved rounds")
        print("| variant | images/s | x first | CPU s / image | peak RSS MB | max |ratio - first's| | "
              "scored / not |")
        print("|---|---|---|---|---|---|---|")
        base = None
        for v in args.variants:
            secs = sum(r["seconds"] for r in results[v])
            n = sum(r["n"] for r in results[v])
            cpu = sum(r["cpu"] for r in results[v])
            ratios = {p: x for r in results[v] for p, x in r["ratios"].items()}
            both = [(ref[p], x) for p, x in ratios.items() if ref.get(p) is not None and x is not None]
            mismatch = sum((ref.get(p) is None) != (x is None) for p, x in ratios.items())
            diff = max((abs(a - b) for a, b in both), default=0.0)
            ips = n / secs
            base = base or ips
            peak = max(r["peak_rss_mb"] + r["children_peak_mb"] for r in results[v])
            print(f"| {v} | {ips:.3f} | {ips / base:.2f} | {cpu / n:.2f} | {peak:.0f} | {diff:.1e}"
                  f"{' (' + str(mismatch) + ' differ in scored/not)' if mismatch else ''} | "
                  f"{len(both)} / {n - len(both)} |")
        if args.ray:
            r = bench_ray(paths[: min(len(paths), 24)])
            print(f"\nRay Data, local ray.init(num_cpus=2), 1 CPU actor, batches of 8: {r['n']} images in "
                  f"{r['seconds']:.1f} s = {r['n'] / r['seconds']:.3f} images/s (incl. actor start-up)")
    if args.resume_rows:
        r = bench_resume(args.resume_rows)
        print(f"\nresume: {r['rows']} files, {r['reused']} found in the manifest, none scored again: walk "
              f"{r['walk_s']:.2f} s, stat + match + rewrite the manifest {r['resume_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
