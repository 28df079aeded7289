"""Turning whatever a user hands us into RGB uint8 arrays, with clear errors.

Files: EXIF rotation applied; grayscale, palette, CMYK, 16-bit and alpha images converted to
8-bit RGB (alpha composited over mid grey, so transparent areas read as flat background).
Arrays and tensors follow one rule for their values, whatever their layout (see
:func:`check_image_values`): integers (any integer dtype) are 0..255, floats are 0..1 (up to
:data:`FLOAT_TOLERANCE` outside is rounding and clipped). Anything else, NaN, infinities and
booleans are refused with a ``ValueError`` that names the range it saw; nothing is guessed, so a
0..255 float or a [-1, 1] tensor can never be misread as a white or washed-out image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

#: How far float values may stray outside [0, 1] and still count as [0, 1] (clipped): rounding in
#: half precision (bfloat16 steps are 1/128 just below 1, float16 ones 1/2048). Values beyond it
#: mean another range ([0, 255], [-1, 1]) and are refused.
FLOAT_TOLERANCE = 0.01


class ImageLoadError(ValueError):
    """An image file could not be read. ``str(err)`` is ``"<path>: <reason>"``; ``err.reason`` is the
    reason alone (for places that show the path already)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


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
    """Read an image file as ``[H, W, 3]`` uint8 RGB; raises :class:`ImageLoadError` with the reason.

    Animated files (GIF, WebP, PNG) give their first frame.
    """
    return _decode(Path(path), path)


def decode_image_bytes(data: bytes, name: str | os.PathLike = "<bytes>") -> np.ndarray:
    """:func:`load_image` for file contents already read (``name`` goes into the error)."""
    import io

    return _decode(io.BytesIO(data), name)


def _decode(source, name) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as img:
            img.load()  # decode now, so truncated files fail here and not later
            return np.ascontiguousarray(_pil_to_rgb(img))
    except FileNotFoundError as err:
        raise ImageLoadError(name, "no such file") from err
    except IsADirectoryError as err:
        raise ImageLoadError(name, "is a folder, not an image file") from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(name, "not an image file (or an unsupported format)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(name, f"cannot decode image ({err})") from err


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


def _range_hint(kind: str, lo: float, hi: float) -> str:
    if kind == "float" and lo >= -0.5 and 1.0 < hi <= 255.5:
        return " (looks like 0..255: divide by 255, or pass uint8)"
    if kind == "float" and -1.0 - FLOAT_TOLERANCE <= lo < 0 and hi <= 1.0 + FLOAT_TOLERANCE:
        return " (looks like [-1, 1]: pass (x + 1) / 2)"
    if kind == "integer" and lo >= 0 and 255 < hi <= 65535:
        return " (looks like 16-bit: divide by 257 and pass uint8, or pass floats in [0, 1])"
    return ""


def check_image_values(values: np.ndarray | torch.Tensor) -> None:
    """Raise a ``ValueError`` unless ``values`` hold image values by effres' one rule.

    * integer dtypes (``uint8``, ``int64``, ``uint16``, ...): 0..255;
    * floating dtypes (any precision): [0, 1], give or take :data:`FLOAT_TOLERANCE`; no NaN or
      infinity;
    * booleans, complex numbers and other dtypes: refused.

    The message names the range it saw and, where it looks like a known one (0..255 floats,
    [-1, 1], 16-bit integers), how to convert it. An empty array passes (its shape is checked
    elsewhere).

    Example:
        >>> check_image_values(np.full((2, 2, 3), 200.0))
        Traceback (most recent call last):
        ValueError: float image values must lie in [0, 1], got values in [200, 200] (looks like 0..255: divide by 255, or pass uint8)
    """
    if torch.is_tensor(values):
        dtype = values.dtype
        kind = ("bool" if dtype == torch.bool else "complex" if values.is_complex()
                else "float" if values.is_floating_point() else "integer")
        empty = values.numel() == 0
        finite = empty or kind != "float" or bool(torch.isfinite(values).all())
        bounds = None if empty or not finite or kind not in ("float", "integer") else \
            (values.min().item(), values.max().item())
    else:
        values = np.asarray(values)
        dtype = values.dtype
        kind = ("bool" if dtype == np.bool_ else "float" if np.issubdtype(dtype, np.floating)
                else "integer" if np.issubdtype(dtype, np.integer) else "complex" if np.issubdtype(dtype, np.complexfloating)
                else "other")
        empty = values.size == 0
        finite = empty or kind != "float" or bool(np.isfinite(values).all())
        bounds = None if empty or not finite or kind not in ("float", "integer") else \
            (values.min().item(), values.max().item())
    if kind == "bool":
        raise ValueError("boolean images are refused (a mask is not an image): pass integers 0..255 or floats "
                         "in [0, 1]")
    if kind not in ("float", "integer"):
        raise ValueError(f"unsupported image dtype {dtype}: pass integers 0..255 or floats in [0, 1]")
    if not finite:
        raise ValueError("image holds NaN or infinite values")
    if bounds is None:
        return
    lo, hi = bounds
    if kind == "float" and (lo < -FLOAT_TOLERANCE or hi > 1.0 + FLOAT_TOLERANCE):
        raise ValueError(f"float image values must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
                         + _range_hint(kind, lo, hi))
    if kind == "integer" and (lo < 0 or hi > 255):
        raise ValueError(f"integer image values must lie in 0..255, got values in {lo}..{hi}"
                         + _range_hint(kind, lo, hi))


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """An ``[H, W]``, ``[H, W, 1|3|4]`` array (integers 0..255 or floats in [0, 1], see
    :func:`check_image_values`) -> ``[H, W, 3]`` uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an [H, W], [H, W, 3] or [H, W, 4] image array, got shape {arr.shape}")
    check_image_values(arr)
    if arr.dtype == np.uint8:
        out = arr
    elif np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.uint8)  # checked: 0..255
    else:
        out = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[2] == 4:  # composite alpha over mid grey, as for files
        alpha = out[..., 3:4].astype(np.float32) / 255.0
        out = (out[..., :3] * alpha + 128.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)


def _channels_last(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` / ``[B, H, W, C]`` (or unbatched) -> ``[B, H, W, C]``; the channel axis is
    found by size (1, 3 or 4 channels), ``[B, 3, H, W]`` winning when ambiguous."""
    if not torch.is_tensor(images):
        raise TypeError(f"expected a tensor, got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise ValueError(f"expected an image tensor [B, 3, H, W] or [B, H, W, C], got shape {tuple(images.shape)}")
    if images.shape[1] in (1, 3, 4) and images.shape[-1] not in (1, 3, 4):
        return images.permute(0, 2, 3, 1)
    if images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot find a 1-, 3- or 4-channel axis in shape {tuple(images.shape)}")
    return images


def _tensor_to_numpy(x: torch.Tensor) -> np.ndarray:
    """Values unchanged, dtype kept where numpy has it (half precisions become float32)."""
    x = x.detach().cpu()
    if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.numpy()


def tensor_to_rgb_list(images: torch.Tensor) -> list[np.ndarray]:
    """``[B, 3, H, W]`` / ``[B, H, W, C]`` (or unbatched) tensor -> list of uint8 RGB arrays.

    Values follow :func:`check_image_values` (integers 0..255, floats in [0, 1]); the channel
    axis is found by size (1, 3 or 4 channels), ``[B, 3, H, W]`` winning when ambiguous. Raises
    ``ValueError`` if any image breaks the rule (score images one by one to keep the others).
    """
    x = _channels_last(images)
    return [array_to_rgb(_tensor_to_numpy(x[i])) for i in range(x.shape[0])]


def rgb_to_tensor(rgb: np.ndarray, device=None) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[1, 3, H, W]`` float in [0, 1]."""
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).to(device)  # own, writable memory
    return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
