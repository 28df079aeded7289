"""effres on Ray Data: score millions of images on a cluster (``pip install "effres[ray]"``).

:class:`EffResPredictor` is a callable class for :meth:`ray.data.Dataset.map_batches`: each actor
loads the model once in ``__init__`` and turns a batch of image bytes (``read_binary_files``),
decoded arrays (``read_images``) or paths into ratio and face columns. A broken image gives an
``error`` in its row; no image ever fails the job.

    import ray
    from effres_core.integrations.ray import score_dataset

    ds = ray.data.read_binary_files("s3://bucket/faces/", include_paths=True)
    score_dataset(ds, concurrency=8, num_gpus=1).write_parquet("s3://bucket/effres-scores/")

``effres curate --engine ray`` runs the same on the files it is given and writes the manifest as
Parquet; decisions and copies/moves then happen on the driver, as with the local engine.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

#: Columns :class:`EffResPredictor` adds (``path`` is passed through when the batch has it).
OUTPUT_COLUMNS = ("path", "size", "sha256", "height", "width", "ratio", "effective_height", "effective_width",
                  "n_faces", "faces", "reason", "error")


def _column(batch: Any, name: str) -> list | None:
    if name not in batch:
        return None
    col = batch[name]
    if isinstance(col, np.ndarray) and col.ndim == 1 and col.dtype != object:
        return col.tolist()  # paths: plain str
    return list(col)  # bytes objects, or one image array per row


class EffResPredictor:
    """Score a Ray Data batch: ``{"bytes" | "image" | "path": [...]}`` -> one row per image with
    :data:`OUTPUT_COLUMNS` (``faces`` as JSON text: ``[{"box", "ratio", "patches_used", "reason"}]``).

    Args:
        model_id, revision: the model (default: the bundled one), as for ``EffRes.from_pretrained``.
        device: ``cuda`` when the actor has a GPU, else ``cpu`` (default: CUDA when visible).
        detector, masker, n_patches: scorer settings.
        precision: ``fp32`` | ``bf16`` | ``fp16``.
        batch_size: patches per forward pass inside the actor (default per device).
        workers: threads per actor that decode and detect (default: 1 on CPU, where Ray gives each
            actor one CPU and ``concurrency`` scales out; up to 8 with a GPU).
    """

    def __init__(self, model_id: str | None = None, *, revision: str | None = None, device: str | None = None,
                 detector: str = "auto", masker: str = "auto", n_patches: int = 100, precision: str = "fp32",
                 batch_size: int | None = None, workers: int | None = None):
        import torch

        from ..measure.batch import BatchScorer, default_workers
        from ..measure.scorer import EffRes

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = EffRes.from_pretrained(model_id, revision=revision, device=device, detector=detector,
                                            masker=masker, n_patches=n_patches)
        self.model._components()
        if workers is None:
            workers = 1 if self.model.device.type == "cpu" else default_workers(self.model.device)
        self.scorer = BatchScorer(self.model, batch_size=batch_size, workers=workers, precision=precision,
                                  keep_maps=False)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from ..measure.batch import read_file
        from ..measure.imageio import decode_image_bytes
        from ..measure.imageio import ImageLoadError, array_to_rgb

        paths = _column(batch, "path")
        blobs, images = _column(batch, "bytes"), _column(batch, "image")
        n = len(next(col for col in (blobs, images, paths) if col is not None))
        paths = paths or [None] * n
        rows: list[dict] = [{"path": p} for p in paths]
        rgbs: list[np.ndarray | None] = [None] * n
        for i in range(n):
            try:
                if blobs is not None:
                    data = bytes(blobs[i])
                    rows[i]["size"] = len(data)
                    rows[i]["sha256"] = hashlib.sha256(data).hexdigest()
                    rgbs[i] = decode_image_bytes(data, paths[i] or f"row {i}")
                elif images is not None:
                    rgbs[i] = array_to_rgb(np.asarray(images[i]))
                else:
                    f = read_file(paths[i])
                    rows[i].update(size=f.size, sha256=f.sha256)
                    if f.error:
                        rows[i]["error"] = f.error
                    rgbs[i] = f.rgb
            except ImageLoadError as err:
                rows[i]["error"] = err.reason  # the row names the path already
            except (ValueError, TypeError, OSError) as err:
                rows[i]["error"] = str(err)
        good = [i for i in range(n) if rgbs[i] is not None]
        try:
            for item in self.scorer.score_arrays([rgbs[i] for i in good], [paths[i] for i in good]):
                rows[good[item.index]].update(_result_columns(item.result))
        except Exception as err:  # noqa: BLE001 - never fail the job: every row says what went wrong
            for i in good:
                rows[i].setdefault("error", f"scoring failed: {err.__class__.__name__}: {err}")
        return {c: [r.get(c) if c != "faces" else r.get(c, "[]") for r in rows] for c in OUTPUT_COLUMNS}


def _result_columns(result) -> dict:
    eff = result.effective_resolution or (None, None)
    size = result.image_size or (None, None)
    return {"height": size[0], "width": size[1], "ratio": result.ratio, "effective_height": eff[0],
            "effective_width": eff[1], "n_faces": len(result.faces),
            "faces": json.dumps([f.to_dict() for f in result.faces]), "reason": result.reason, "error": result.error}


def score_dataset(ds, *, concurrency: int = 1, num_gpus: float = 0.0, batch_size: int = 16,
                  num_cpus: float | None = None, **predictor_kwargs):
    """``ds.map_batches(EffResPredictor, ...)`` with ``concurrency`` actors of ``num_gpus`` GPUs each
    (``num_cpus``, default 1 per CPU actor) and ``batch_size`` images per call. ``predictor_kwargs``
    go to :class:`EffResPredictor` (``model_id``, ``detector``, ``precision``, ...)."""
    import ray.data

    if num_gpus and "device" not in predictor_kwargs:
        predictor_kwargs["device"] = "cuda"
    resources = {"num_gpus": num_gpus} if num_gpus else {"num_cpus": 1 if num_cpus is None else num_cpus}
    if num_gpus and num_cpus is not None:
        resources["num_cpus"] = num_cpus
    return ds.map_batches(EffResPredictor, fn_constructor_kwargs=predictor_kwargs, batch_size=batch_size,
                          batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=concurrency), **resources)


def ray_score_fn(model_id: str | None, model: str, settings: str, *, address: str | None = None,
                 concurrency: int = 1, num_gpus: float = 0.0, batch_size: int = 16, **predictor_kwargs):
    """The ``effres curate --engine ray`` scoring step: files -> manifest rows, scored by Ray actors.
    Starts (or, with ``address``, joins) Ray unless it is already running."""
    from ..curate.run import _stat

    def score(todo):
        import datetime as _dt

        import ray

        if not todo:
            return
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        rel = {t.path: t.rel for t in todo}
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

        def row(out: dict) -> dict:
            path = out["path"] if out["path"] in rel else "/" + str(out["path"]).lstrip("/")
            size, mtime = _stat(path)
            faces = out.get("faces")
            return {"path": path, "rel": rel.get(path), "size": size if size is not None else out.get("size"),
                    "mtime": mtime, "sha256": out.get("sha256"), "height": out.get("height"),
                    "width": out.get("width"), "ratio": out.get("ratio"), "effective_height": out.get("effective_height"),
                    "effective_width": out.get("effective_width"), "n_faces": out.get("n_faces") or 0,
                    "faces": json.loads(faces) if faces else [], "reason": out.get("reason"),
                    "error": out.get("error"), "model": model, "settings": settings, "scored_at": stamp}

        present = []
        for t in todo:
            if os.path.isfile(t.path):
                present.append(t.path)
            else:  # Ray's reader would fail the whole job on a missing file
                yield row({"path": t.path, "error": "no such file"})
        if not present:
            return
        ds = ray.data.read_binary_files(present, include_paths=True)
        scored = score_dataset(ds, concurrency=concurrency, num_gpus=num_gpus, batch_size=batch_size,
                               model_id=model_id, **predictor_kwargs)
        for out in scored.iter_rows():
            yield row({k: _plain(v) for k, v in out.items()})

    return score


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
