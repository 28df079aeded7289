"""EffResLoader: pick effres weights (bundled default, a file in ``models/effres``, or a Hub id)."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

import torch
from comfy_api.latest import io

from ..effres_core.model import hub
from ..effres_core.measure.faces import DETECTORS
from ..effres_core.measure.masks import MASKERS
from ..effres_core.measure.scorer import EffRes

logger = logging.getLogger("effres")

DEFAULT_CHOICE = "default (bundled)"
DEVICES = ("auto", "cpu", "cuda")
FOLDER = "effres"
_CACHE_SIZE = 4

#: The type that carries a loaded :class:`~effres_core.measure.scorer.EffRes` between our nodes.
EffResModel = io.Custom("EFFRES_MODEL")

_cache: "OrderedDict[tuple, EffRes]" = OrderedDict()


def register_model_folder() -> None:
    """Make ``models/effres`` a ComfyUI model folder (``.safetensors`` only). A no-op outside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return
    path = os.path.join(folder_paths.models_dir, FOLDER)
    if FOLDER in folder_paths.folder_names_and_paths:  # e.g. set by extra_model_paths.yaml
        folder_paths.add_model_folder_path(FOLDER, path)
    else:
        folder_paths.folder_names_and_paths[FOLDER] = ([path], {".safetensors"})


def weight_choices() -> list[str]:
    """The default plus every ``.safetensors`` file under the ``models/effres`` folders."""
    try:
        import folder_paths

        files = folder_paths.get_filename_list(FOLDER)
    except (ImportError, KeyError):
        files = []
    return [DEFAULT_CHOICE] + [f for f in files if f.endswith(".safetensors")]


def resolve_choice(weights: str, hub_id: str = "") -> str | None:
    """The model id for :func:`effres_core.model.hub.resolve_weights`: None (default), a path or a Hub id."""
    if hub_id and hub_id.strip():
        return hub_id.strip()
    if weights in ("", DEFAULT_CHOICE):
        return None
    try:
        import folder_paths

        path = folder_paths.get_full_path(FOLDER, weights)
    except ImportError:
        path = None
    if path is None:
        raise ValueError(f"effres weights {weights!r} are not in models/{FOLDER}; "
                         f"put a .safetensors file there or pick {DEFAULT_CHOICE!r}")
    return path


def pick_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        try:
            import comfy.model_management

            return torch.device(comfy.model_management.get_torch_device())
        except ImportError:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was chosen but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(device)


def load_model(model_id: str | None, device: torch.device, detector: str, masker: str) -> EffRes:
    """Load (or fetch from the cache) an :class:`EffRes`; weights are built outside inference mode
    so the gradient nodes can backpropagate through them."""
    path = hub.resolve_weights(model_id)
    key = (str(path), path.stat().st_mtime_ns, str(device), detector, masker)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    # ComfyUI executes nodes under torch.inference_mode(); weights made there could never take part
    # in autograd (guidance, enhancement), so build them with inference mode off.
    with torch.inference_mode(False):
        model = EffRes(hub.load_weights_file(path), detector=detector, masker=masker, device=device)
    _cache[key] = model
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    logger.info("effres: loaded %s on %s", path, device)
    return model


class EffResLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EffResLoader",
            display_name="Load effres model",
            category="effres",
            description="Loads an effective-resolution model (once; later runs reuse it).",
            inputs=[
                io.Combo.Input("weights", options=weight_choices(), default=DEFAULT_CHOICE,
                               tooltip="The bundled default model, or a .safetensors file from models/effres."),
                io.String.Input("hub_id", default="",
                                tooltip="Optional Hugging Face Hub repo id (owner/name); overrides 'weights'. "
                                        "Downloaded once, then used from the local cache."),
                io.Combo.Input("device", options=list(DEVICES), default="auto",
                               tooltip="Where the scorer runs; 'auto' uses ComfyUI's device."),
                io.Combo.Input("detector", options=list(DETECTORS), default="auto",
                               tooltip="Face detector: 'auto' = RetinaFace if installed with its weights in models/facexlib, "
                                       "else the bundled MTCNN; "
                                       "'whole' treats the whole image as the face."),
                io.Combo.Input("masker", options=list(MASKERS), default="auto",
                               tooltip="Face mask that decides which patches count: 'auto' = BiSeNet face parsing "
                                       "if installed, else an ellipse; 'none' uses the whole crop."),
            ],
            outputs=[EffResModel.Output(display_name="effres_model")],
        )

    @classmethod
    def execute(cls, weights: str, hub_id: str = "", device: str = "auto", detector: str = "auto",
                masker: str = "auto") -> io.NodeOutput:
        model_id = resolve_choice(weights, hub_id)
        try:
            model = load_model(model_id, pick_device(device), detector, masker)
        except hub.WeightsNotFoundError as err:
            raise ValueError(f"effres: cannot load weights: {err}") from err
        return io.NodeOutput(model)


register_model_folder()
