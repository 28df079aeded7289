"""Weights on disk and on the Hugging Face Hub: ``model.safetensors`` + ``config.json``.

The layout is the one of huggingface_hub's ``PyTorchModelHubMixin``. The config is also written
into the safetensors metadata, so a lone ``.safetensors`` file is enough to rebuild the model.
Loading is strict: a missing or unexpected tensor is an error, never a silently random layer.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from .net import EffResNet

logger = logging.getLogger("effres")

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
#: Where the bundled default model is published.
DEFAULT_REPO_ID = "effres/effres-face-mobilenetv2"
#: The bundled default model, shipped inside the package so scoring never needs a network.
BUNDLED_DEFAULT = Path(__file__).parent / "weights" / "default"


class WeightsNotFoundError(FileNotFoundError):
    """No weights could be found for the requested model id."""


def save_pretrained(net: EffResNet, folder: str | os.PathLike, extra_config: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` and return the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(net.config, **(extra_config or {}))
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"effres_config": json.dumps(config)})
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def load_weights_file(weights: str | os.PathLike, config: dict | None = None) -> EffResNet:
    """Build an :class:`EffResNet` from a ``.safetensors`` file, strictly."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights = Path(weights)
    if weights.suffix != ".safetensors":
        raise ValueError(f"only .safetensors weights are accepted, got {weights.name!r}")
    if config is None:
        sidecar = weights.with_name(CONFIG_NAME)
        if sidecar.is_file():
            config = json.loads(sidecar.read_text())
        else:
            with safe_open(str(weights), framework="pt") as f:
                meta = f.metadata() or {}
            if "effres_config" not in meta:
                raise ValueError(f"{weights} has no config.json beside it and no effres config in its metadata")
            config = json.loads(meta["effres_config"])
    net = EffResNet(
        backbone=config.get("backbone", "mobilenet_v2"),
        patch_size=config.get("patch_size", 128),
        width=config.get("width", 1.0),
    )
    net.load_state_dict(load_file(str(weights)), strict=True)
    if config.get("calibration"):
        net.set_calibration(config["calibration"])
    net.config.update({k: v for k, v in config.items() if k not in net.config})
    return net.eval()


def resolve_weights(model_id: str | os.PathLike | None = None, revision: str | None = None) -> Path:
    """Find the ``.safetensors`` file for a model id, preferring local copies.

    ``model_id`` may be ``None`` (the bundled default), a folder, a ``.safetensors`` file, or a
    Hub repo id (``owner/name``), optionally at ``revision``. Hub downloads are tried from the
    local cache first, so a model fetched once works offline.
    """
    if model_id is None:
        if (BUNDLED_DEFAULT / WEIGHTS_NAME).is_file():
            return BUNDLED_DEFAULT / WEIGHTS_NAME
        try:
            return _hub_download(DEFAULT_REPO_ID, revision)
        except WeightsNotFoundError as err:
            raise WeightsNotFoundError(
                "no default effres model is installed and the Hub copy could not be fetched; "
                "pass a model folder, a .safetensors file or a Hub repo id"
            ) from err
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / WEIGHTS_NAME).is_file():
            raise WeightsNotFoundError(f"{path} has no {WEIGHTS_NAME}")
        return path / WEIGHTS_NAME
    if path.is_file():
        return path
    text = str(model_id)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith(".safetensors"):
        return _hub_download(text, revision)
    raise WeightsNotFoundError(f"no model at {text!r}: not a folder, a .safetensors file or a Hub repo id")


def _hub_download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    errors = []
    for local_only in (True, False):
        try:
            weights = hf_hub_download(repo_id, WEIGHTS_NAME, revision=revision, local_files_only=local_only)
            try:
                hf_hub_download(repo_id, CONFIG_NAME, revision=revision, local_files_only=local_only)
            except Exception:  # the config is optional: the safetensors metadata holds it too
                pass
            return Path(weights)
        except Exception as err:  # offline, missing repo, auth: all mean "not here"
            errors.append(f"{'cache' if local_only else 'hub'}: {err.__class__.__name__}: {err}")
    raise WeightsNotFoundError(f"could not get {repo_id!r} from the Hub ({'; '.join(errors)})")


def load_pretrained(model_id: str | os.PathLike | None = None, revision: str | None = None) -> EffResNet:
    """Load an :class:`EffResNet` (eval mode, CPU) from any id :func:`resolve_weights` takes."""
    return load_weights_file(resolve_weights(model_id, revision))


def push_to_hub(net: EffResNet, repo_id: str, model_card: str | None = None, private: bool = False,
                extra_config: dict | None = None) -> str:
    """Upload the weights, config and an optional model card (``README.md``) to a Hub repo."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(net, tmp, extra_config)
        if model_card:
            Path(tmp, "README.md").write_text(model_card)
        return upload_model_folder(tmp, repo_id, private=private)


def upload_model_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = False,
                        commit_message: str = "Upload effres model", allow_patterns: list[str] | None = None) -> str:
    """Create the Hub repo ``repo_id`` if needed and upload ``folder`` (only ``allow_patterns`` when
    given) in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True, private=private)
    kwargs = {"allow_patterns": allow_patterns} if allow_patterns is not None else {}
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message, **kwargs)
    return str(getattr(info, "commit_url", info))


def state_dict_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True when both modules hold bit-identical tensors under the same names."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
