"""Turning whatever a user hands us into RGB uint8 arrays, with clear errors.

Files: EXIF rotation applied; grayscale, palette, CMYK, 16-bit and alpha images converted to
8-bit RGB (alpha composited over mid grey, so transparent areas read as flat background).
Tensors: ``[B, 3, H, W]`` or ComfyUI-style ``[B, H, W, C]`` floats in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class ImageLoadError(ValueError):
    """An image could not be read or converted."""


def _pil_to_rgb(img) -> np.ndarray:
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``[H, W, 3]`` uint8 RGB; raises :class:`ImageLoadError` with the reason."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so truncated files fail here and not later
            return np.ascontiguousarray(_pil_to_rgb(img))
    except FileNotFoundError as err:
        raise ImageLoadError(f"{path}: no such file") from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(f"{path}: not an image file (or an unsupported format)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(f"{path}: cannot decode image ({err})") from err


def find_images(paths, recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted list of image files (folders searched recursively)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(p)  # a missing or odd file is reported when it is read, not dropped silently
    return found


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """An ``[H, W]``, ``[H, W, 1|3|4]`` array (uint8, uint16 or float in [0, 1]) -> ``[H, W, 3]`` uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an [H, W], [H, W, 3] or [H, W, 4] image array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = (arr.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("image holds NaN or infinite values")
        out = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image dtype {arr.dtype}")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[2] == 4:  # composite alpha over mid grey, as for files
        alpha = out[..., 3:4].astype(np.float32) / 255.0
        out = (out[..., :3] * alpha + 128.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)


def tensor_to_rgb_list(images: torch.Tensor) -> list[np.ndarray]:
    """``[B, 3, H, W]`` / ``[B, H, W, C]`` (or unbatched) float tensor in [0, 1] -> list of uint8 RGB arrays.

    The channel axis is found by size (1, 3 or 4 channels); ``[B, 3, H, W]`` wins when ambiguous.
    """
    if not torch.is_tensor(images):
        raise TypeError(f"expected a tensor, got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise ValueError(f"expected an image tensor [B, 3, H, W] or [B, H, W, C], got shape {tuple(images.shape)}")
    if images.shape[1] in (1, 3, 4) and images.shape[-1] not in (1, 3, 4):
        images = images.permute(0, 2, 3, 1)
    elif images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot find a 1-, 3- or 4-channel axis in shape {tuple(images.shape)}")
    x = images.detach().float().cpu()
    if not torch.isfinite(x).all():
        raise ValueError("image tensor holds NaN or infinite values")
    return [array_to_rgb(x[i].numpy()) for i in range(x.shape[0])]


def rgb_to_tensor(rgb: np.ndarray, device=None) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[1, 3, H, W]`` float in [0, 1]."""
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).to(device)  # own, writable memory
    return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
