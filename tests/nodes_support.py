"""Helpers for the node tests: load the repository root as a ComfyUI custom-node package.

ComfyUI imports a pack as a package from its folder; we do the same under a private name, with
or without the minimal ``tests/fake_comfy`` stand-in for ComfyUI's API on ``sys.path``. Nothing
here installs or imports a top-level ``nodes`` module (ComfyUI has its own).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FAKE_COMFY = Path(__file__).resolve().parent / "fake_comfy"
_COMFY_MODULES = ("comfy_api", "comfy_execution", "folder_paths", "comfy")


def _forget(prefixes) -> None:
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            del sys.modules[name]


@contextlib.contextmanager
def pack(name: str, fake_comfy: bool):
    """Import the repository root as package ``name``; with ``fake_comfy`` the stand-in API is importable."""
    _forget(_COMFY_MODULES + (name,))
    if fake_comfy:
        sys.path.insert(0, str(FAKE_COMFY))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        if fake_comfy:
            sys.path.remove(str(FAKE_COMFY))
        _forget(_COMFY_MODULES + (name,))


def inference_tensors_in(module: torch.nn.Module) -> int:
    return sum(t.is_inference() for t in list(module.parameters()) + list(module.buffers()))


def comfy_images(b: int = 2, h: int = 64, w: int = 64, c: int = 3, seed: int = 0) -> torch.Tensor:
    """A ComfyUI IMAGE ``[B, H, W, C]``: smooth random colour fields (something a scorer can chew on)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, c, max(2, h // 8), max(2, w // 8), generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).movedim(1, -1)


def pack_module(pack_package, name: str):
    """A module of a pack loaded by :func:`pack`, e.g. ``pack_module(p, "nodes.score")``."""
    return importlib.import_module(f"{pack_package.__name__}.{name}")


def run_node(cls, **inputs):
    """``cls.execute(**inputs)`` under inference mode, as ComfyUI's executor runs every node."""
    with torch.inference_mode():
        return cls.execute(**inputs)
