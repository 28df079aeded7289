"""Scoring many images fast: background workers, patches of several images in one forward pass.

:class:`BatchScorer` runs :meth:`EffRes.score_rgb` for many images at once, in input order:

- worker threads read, decode, detect, mask and cut patches (OpenCV, PIL, numpy and torch
  release the GIL; each thread has its own Haar cascade);
- each face's kept patches go to a :class:`PatchPool`, which gathers the patches of all waiting
  images into forward passes of exactly ``batch_size`` patches (the last one padded, so every
  pass has the same shape and oneDNN/cuDNN set up once);
- a broken file gives its own ``error`` result and the batch goes on.

The results are those of ``score_rgb`` (the same steps, only the forward passes are pooled):
ratios agree with the one-image path to float rounding (``tests/test_batch.py``).

Devices. CPU: ``workers`` threads (default: the usable cores) each run forward passes with one
intra-op thread, so parallel passes share no OpenMP barriers. With ``accelerate`` the network runs
as a frozen TorchScript graph on oneDNN (checked against the eager network when built; 1.4-1.65x
the patches per CPU second of the eager net in forward-only tests, though the folder benchmark
showed no lower CPU time per image, see docs/curate.md). CUDA: patches are cut on the CPU, copied to the GPU from pinned memory
without blocking, run channels-last under optional bf16/fp16 autocast, one forward pass at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .imageio import ImageLoadError, decode_image_bytes
from .scorer import EffRes, ScoreResult

logger = logging.getLogger("effres")

PRECISIONS = ("fp32", "bf16", "fp16")
LOADERS = ("threads", "processes")
#: Below this many images a TorchScript build (about a second) costs more than it saves.
ACCELERATE_MIN_IMAGES = 16


def usable_cpus() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_batch_size(device: torch.device) -> int:
    """Patches per forward pass: 16 on CPUs (cache-sized, benchmarks/bench_score.py), 256 on GPUs."""
    return 16 if torch.device(device).type == "cpu" else 256


def default_workers(device: torch.device) -> int:
    """Threads that read, detect and cut patches: the usable cores on CPU (they run the network too),
    up to 8 next to a GPU."""
    n = usable_cpus()
    return n if torch.device(device).type == "cpu" else min(8, n)


# ---- reading files -------------------------------------------------------------------------------
@dataclass
class FileData:
    """One file read from disk: its bytes' SHA-256 and size, mtime, and the decoded image (or why not)."""

    path: str
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None
    rgb: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None


def read_file(path: str | os.PathLike, decode: bool = True) -> FileData:
    """Read a file once: stat, SHA-256 of its bytes and (``decode``) the image. Never raises."""
    path = str(path)
    out = FileData(path)
    try:
        st = os.stat(path)
        out.size, out.mtime = st.st_size, st.st_mtime
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        out.error = "no such file"  # the result names the path
        return out
    except OSError as err:
        out.error = f"cannot read ({err.strerror or err})"
        return out
    out.sha256 = hashlib.sha256(data).hexdigest()
    if decode:
        try:
            out.rgb = decode_image_bytes(data, path)
        except ImageLoadError as err:
            out.error = err.reason
    return out


# ---- pooling patches across images ---------------------------------------------------------------
class _Job:
    __slots__ = ("patches", "out", "taken", "left", "error", "done")

    def __init__(self, patches: torch.Tensor):
        self.patches, self.taken, self.left = patches, 0, patches.shape[0]
        self.out = torch.empty(patches.shape[0], dtype=torch.float32)
        self.error: BaseException | None = None
        self.done = self.left == 0


class PatchPool:
    """A patch scorer for :meth:`EffRes.score_rgb` that many threads call at once.

    Each call hands over one face's patches and waits. Waiting callers run forward passes for
    everyone: a pass takes ``batch_size`` patches from the queue (from one or several images) as
    soon as that many are waiting, or whatever is waiting once every thread scoring an image is
    waiting too (nobody will add more). ``pad`` fills a short pass up to ``batch_size`` with
    zeros whose outputs are dropped, so every pass has one shape. At most ``max_parallel`` passes
    run at once (1 on a GPU).

    Args:
        net: the patch regressor (an ``EffRes``'s ``inference_net``, or an accelerated copy).
        patch_size: its patch side.
        batch_size: patches per forward pass.
        device: where the network runs; patches are cut on the CPU and copied there.
        precision: ``fp32`` | ``bf16`` | ``fp16`` (autocast in the forward pass).
        max_parallel: forward passes at once.
        max_threads: threads that score images (and call the pool).
        pad: pad short passes to ``batch_size``.
    """

    def __init__(self, net, patch_size: int, batch_size: int, device: torch.device, precision: str = "fp32",
                 max_parallel: int = 1, pad: bool = True, max_threads: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.net, self.patch_size, self.batch_size = net, int(patch_size), int(batch_size)
        self.target = torch.device(device)
        self.device = torch.device("cpu")  # where score_rgb cuts the patches
        self.chunk_size = 1 << 30  # score_rgb hands over each face's patches in one call
        self.precision, self.max_parallel, self.pad = precision, max(1, int(max_parallel)), pad
        self.max_threads = max(1, int(max_threads))  # threads that can call at once
        self._cv = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._pending = self._busy = self._waiting = self._running = 0
        self.passes = self.patches_run = self.patches_padded = 0

    def expect(self) -> None:
        """One more image is on its way (call when it is queued): the pool waits for its patches
        before running a short pass, unless every thread is already waiting."""
        with self._cv:
            self._busy += 1

    def forget(self) -> None:
        """An announced image will not come after all (its task was cancelled)."""
        with self._cv:
            self._busy -= 1
            self._cv.notify_all()

    @contextlib.contextmanager
    def scoring(self):
        """Wrap the scoring of one image that :meth:`expect` announced; leaving it says it is done."""
        try:
            yield self
        finally:
            self.forget()

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        job = _Job(patches.detach())
        with self._cv:
            if not job.done:
                self._queue.append(job)
                self._pending += job.left
                self._cv.notify_all()
            self._waiting += 1
            try:
                while not job.done:
                    if self._can_run():
                        self._run_one()
                    else:
                        self._cv.wait()
            finally:
                self._waiting -= 1
        if job.error is not None:
            raise RuntimeError(f"forward pass failed: {job.error.__class__.__name__}: {job.error}") from job.error
        return job.out

    def _can_run(self) -> bool:
        if self._pending == 0 or self._running >= self.max_parallel:
            return False
        # Short pass only when no more patches can come: every image in flight, or every thread, waits.
        return self._pending >= self.batch_size or self._waiting >= min(self._busy, self.max_threads)

    def _run_one(self) -> None:
        """Take one pass of patches off the queue and run it with the lock released."""
        slices, n = [], 0
        while self._queue and n < self.batch_size:
            job = self._queue[0]
            k = min(job.patches.shape[0] - job.taken, self.batch_size - n)
            slices.append((job, job.taken, job.taken + k))
            job.taken += k
            n += k
            if job.taken == job.patches.shape[0]:
                self._queue.popleft()
        self._pending -= n
        self._running += 1
        self._cv.release()
        error = out = None
        try:
            out = self._forward([job.patches[a:b] for job, a, b in slices], n)
        except Exception as err:  # noqa: BLE001 - handed to the waiting images, never lost
            error = err
        finally:
            self._cv.acquire()
        self._running -= 1
        offset = 0
        for job, a, b in slices:
            if error is not None and job.error is None:
                job.error = error
                if job in self._queue:  # its other patches are not worth a pass any more
                    self._queue.remove(job)
                    self._pending -= job.patches.shape[0] - job.taken
            elif error is None:
                job.out[a:b] = out[offset:offset + b - a]
            offset += b - a
            job.left -= b - a
            job.done = job.left == 0 or job.error is not None
        self.passes += 1
        self.patches_run += n
        self._cv.notify_all()

    def _forward(self, parts: list[torch.Tensor], n: int) -> torch.Tensor:
        p = self.patch_size
        size = self.batch_size if self.pad else n
        cuda = self.target.type == "cuda"
        batch = torch.zeros(size, 3, p, p, dtype=parts[0].dtype, pin_memory=cuda and torch.cuda.is_available())
        torch.cat(parts, out=batch[:n]) if len(parts) > 1 else batch[:n].copy_(parts[0])
        self.patches_padded += size - n
        x = batch.to(self.target, non_blocking=cuda).contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        precision = (torch.autocast(self.target.type, dtype=dtype) if dtype is not None
                     else contextlib.nullcontext())
        with torch.inference_mode(), precision:
            y = self.net(x)
        return y[:n].float().cpu()


# ---- the scorer ----------------------------------------------------------------------------------
@dataclass
class BatchItem:
    """One input's outcome: its index in the input, the :class:`ScoreResult`, and for files
    what :func:`read_file` found (size, mtime, SHA-256). ``rgb`` is kept only when asked for."""

    index: int
    result: ScoreResult
    file: FileData | None = None
    rgb: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0


class BatchScorer:
    """Score many images with one :class:`EffRes`, results in input order.

    Example:
        >>> model = EffRes.from_pretrained()
        >>> scorer = BatchScorer(model)                       # defaults per device
        >>> for item in scorer.score_paths(paths):            # a generator, input order
        ...     print(item.result.path, item.result.ratio, item.file.sha256)

    Args:
        model: the scorer (its detector, masker and settings are used as they are).
        batch_size: patches per forward pass (default 16 on CPU, 256 on GPU).
        workers: threads that read, decode, detect and cut patches (default: usable cores on CPU,
            up to 8 with a GPU). 0 scores in the calling thread, one image at a time.
        precision: ``fp32`` (default, the reference numbers), ``bf16`` or ``fp16`` autocast.
        accelerate: CPU only: run the network as a frozen TorchScript oneDNN graph. ``auto`` does so
            for runs of at least 16 images, and only when it matches the eager network to 1e-4.
        loader: ``threads`` (default) or ``processes`` (a torch ``DataLoader`` reads and decodes
            in worker processes; detection and patches stay in threads).
        keep_maps: keep each result's ``heatmap`` and ``mask`` arrays (two float images per
            result); off saves memory on large folders.
        threads: torch intra-op threads while scoring on CPU (default 1 when workers > 1, so
            parallel passes do not share OpenMP barriers); restored afterwards.
    """

    def __init__(self, model: EffRes, *, batch_size: int | None = None, workers: int | None = None,
                 precision: str = "fp32", accelerate: str | bool = "auto", loader: str = "threads",
                 keep_maps: bool = True, threads: int | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if loader not in LOADERS:
            raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
        if accelerate not in ("auto", True, False):
            raise ValueError(f"accelerate must be 'auto', True or False, got {accelerate!r}")
        self.model = model
        self.batch_size = default_batch_size(model.device) if batch_size is None else int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.workers = default_workers(model.device) if workers is None else int(workers)
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.precision, self.accelerate, self.loader, self.keep_maps = precision, accelerate, loader, keep_maps
        self.threads = threads
        self._accelerated = None
        self._run_workers = self.workers
        self.accelerated = False  # whether the last run used the TorchScript graph

    @property
    def cuda(self) -> bool:
        return self.model.device.type == "cuda"

    # ---- network -----------------------------------------------------------------------------
    def _net(self, n_images: int | None):
        net = self.model.inference_net
        if self.cuda:
            net.to(memory_format=torch.channels_last)  # same function; cuDNN's faster layout
            return net, False
        want = self.accelerate is True or (self.accelerate == "auto" and n_images is not None
                                           and n_images >= ACCELERATE_MIN_IMAGES and self.precision == "fp32")
        if not want:
            return net, False
        if self._accelerated is None:
            self._accelerated = accelerate_for_cpu(net, self.model.patch_size, self.batch_size) or False
        return (self._accelerated, True) if self._accelerated is not False else (net, False)

    def _pool(self, n_images: int | None) -> PatchPool:
        # No more threads than images: one image keeps torch's intra-op threads for its passes.
        self._run_workers = self.workers if not n_images or not self.workers else min(self.workers, n_images)
        net, self.accelerated = self._net(n_images)
        parallel = 1 if self.cuda else max(1, self._run_workers)
        return PatchPool(net, self.model.patch_size, self.batch_size, self.model.device, self.precision,
                         max_parallel=parallel, max_threads=max(1, self._run_workers))

    @contextlib.contextmanager
    def _cpu_threads(self):
        if self.cuda:
            yield
            return
        want = self.threads if self.threads else (1 if self._run_workers > 1 else None)
        before = torch.get_num_threads()
        if want:
            torch.set_num_threads(want)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # ---- scoring -----------------------------------------------------------------------------
    def _score_one(self, pool: PatchPool, data: FileData | None, rgb: np.ndarray | None, path: str | None,
                   keep_rgb: bool, index: int) -> BatchItem:
        t0 = time.perf_counter()
        with pool.scoring():
            if data is not None and data.rgb is None and data.error is None:
                data = read_file(data.path)
            if data is not None:
                rgb, path = data.rgb, data.path
            if rgb is None:
                result = ScoreResult(path=path, error=data.error if data is not None else "no image")
            else:
                try:
                    result = self.model.score_rgb(rgb, path=path, runner=pool)
                except Exception as err:  # noqa: BLE001 - one bad image never stops the batch
                    result = ScoreResult(path=path, image_size=tuple(rgb.shape[:2]),
                                         error=f"scoring failed: {err.__class__.__name__}: {err}")
            if not self.keep_maps:
                result.heatmap = result.mask = None
        if data is not None:
            data.rgb = None  # the caller gets it as item.rgb when asked; free it otherwise
        return BatchItem(index, result, data, rgb if keep_rgb else None, time.perf_counter() - t0)

    def score_paths(self, paths: Iterable[str | os.PathLike], *, keep_rgb: bool = False,
                    total: int | None = None) -> Iterator[BatchItem]:
        """Score image files; yields one :class:`BatchItem` per path, in input order, as soon as it and
        all before it are done. A file that cannot be read or decoded gives an ``error`` result."""
        paths = list(paths) if not isinstance(paths, Sequence) else paths
        n = len(paths) if total is None else total
        self.model._components()  # resolve the detector once, before the threads
        pool = self._pool(n)
        if self.loader == "processes" and self._run_workers > 0:
            source = _decode_in_processes(paths, self._run_workers)
        else:
            source = (FileData(str(p)) for p in paths)  # read and decoded in the worker threads
        yield from self._run(pool, ((d, None, d.path) for d in source), keep_rgb)

    def score_arrays(self, images: Iterable[np.ndarray], paths: Sequence[str | None] | None = None, *,
                     keep_rgb: bool = False) -> Iterator[BatchItem]:
        """Score ``[H, W, 3]`` uint8 arrays (already decoded), in input order."""
        images = list(images)
        self.model._components()
        pool = self._pool(len(images))
        names = paths if paths is not None else [None] * len(images)
        yield from self._run(pool, ((None, rgb, name) for rgb, name in zip(images, names)), keep_rgb)

    def score(self, images) -> list[ScoreResult]:
        """Like :meth:`EffRes.score` for a list or batch (paths, PIL images, arrays, tensors): a list."""
        items = list(images) if isinstance(images, (list, tuple)) else None
        if items is not None and all(isinstance(i, (str, os.PathLike)) for i in items):
            return [it.result for it in self.score_paths(items)]
        rgbs, names, errors = [], [], {}
        for k, item in enumerate(items if items is not None else [images]):
            try:
                for rgb in EffRes._to_rgb_list(item):
                    rgbs.append(rgb)
                    names.append(str(item) if isinstance(item, (str, os.PathLike)) else None)
            except (ImageLoadError, ValueError, TypeError) as err:
                errors[len(rgbs)] = ScoreResult(path=str(item) if isinstance(item, (str, os.PathLike)) else None,
                                                error=str(err))
                rgbs.append(None)
                names.append(None)
        scored = {it.index: it.result for it in self.score_arrays([r for r in rgbs if r is not None],
                                                                  [nm for r, nm in zip(rgbs, names) if r is not None])}
        out, j = [], 0
        for k, rgb in enumerate(rgbs):
            if rgb is None:
                out.append(errors[k])
            else:
                out.append(scored[j])
                j += 1
        return out

    def _run(self, pool: PatchPool, inputs, keep_rgb: bool) -> Iterator[BatchItem]:
        with self._cpu_threads():
            workers = self._run_workers
            if workers == 0:
                for i, (data, rgb, path) in enumerate(inputs):
                    pool.expect()
                    yield self._score_one(pool, data, rgb, path, keep_rgb, i)
                return
            window = workers * 2 + 2  # images in flight: enough to keep every worker busy
            with ThreadPoolExecutor(workers, thread_name_prefix="effres-score") as ex:
                futures: deque = deque()
                it = enumerate(inputs)

                def submit() -> bool:
                    try:
                        i, (data, rgb, path) = next(it)
                    except StopIteration:
                        return False
                    pool.expect()
                    futures.append(ex.submit(self._score_one, pool, data, rgb, path, keep_rgb, i))
                    return True

                for _ in range(window):
                    if not submit():
                        break
                try:
                    while futures:
                        item = futures.popleft().result()
                        submit()
                        yield item
                finally:  # the consumer stopped early (Ctrl-C, break): drop what is queued
                    for f in futures:
                        if f.cancel():
                            pool.forget()


def accelerate_for_cpu(net: torch.nn.Module, patch_size: int, batch_size: int, tolerance: float = 1e-4):
    """A frozen TorchScript copy of ``net`` with its convolutions on oneDNN (1.4-1.65x the eager
    patches per CPU second in forward-only tests here), or ``None`` when it cannot be built or differs from ``net`` by more
    than ``tolerance`` on a probe batch. TorchScript is deprecated in favour of ``torch.compile``,
    which needs a C++ toolchain and tens of seconds per start on CPU; this needs neither."""
    probe = torch.rand(batch_size, 3, patch_size, patch_size, generator=torch.Generator().manual_seed(0))
    probe = probe.contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net, probe, check_trace=False)
            fast = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            diff = (fast(probe) - net(probe)).abs().max().item()
    except Exception as err:  # noqa: BLE001 - no oneDNN, untraceable net: the eager net is fine
        logger.info(f"CPU acceleration unavailable ({err.__class__.__name__}: {err}); using the eager network")
        return None
    if not diff <= tolerance:
        logger.info(f"CPU acceleration differs from the eager network by {diff:.2e}; using the eager network")
        return None
    return fast


# ---- DataLoader loader (measured against threads in benchmarks/bench_curate.py, docs/curate.md) ---
class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = [str(p) for p in paths]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return read_file(self.paths[i])


def _identity(x):
    return x


def _decode_in_processes(paths, workers: int) -> Iterator[FileData]:
    """Read and decode in ``workers`` DataLoader processes, in order."""
    loader = torch.utils.data.DataLoader(_FileDataset(paths), batch_size=None, num_workers=workers,
                                         collate_fn=_identity, prefetch_factor=2)
    yield from loader

