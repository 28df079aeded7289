"""Draw docs/images/kernels.png: one face through each of the 8 degradation kernels at factor 1/4.

    python benchmarks/make_kernel_figure.py [--image FACE.jpg] [--out docs/images/kernels.png]

Each tile is the face crop downscaled to 1/4 with the kernel and scaled back up with the same
kernel (``effres_core.synthesis.degradations.degrade``), so every tile has the same true ratio 0.25; the
first tile is the sharp original. The face is cropped with the Haar detector (whole image if none).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from effres_core.synthesis.degradations import KERNELS, degrade  # noqa: E402

DEFAULT_FACE = ROOT.parent / "shared" / "data" / "faces" / "val" / "openpeople_P009_studio_portrait.jpg"


def face_crop(path: Path, size: int) -> np.ndarray:
    """A square ``size`` px crop around the largest Haar face of ``path`` (uint8 RGB)."""
    from effres_core.measure.faces import expand_box, get_detector
    from effres_core.measure.imageio import load_image

    rgb = load_image(path)
    if min(rgb.shape[:2]) >= 1024:  # the shipped JPEGs are only pixel-sharp at half size
        rgb = np.asarray(Image.fromarray(rgb).reduce(2))
    detect, _ = get_detector("haar")
    faces = detect(rgb)
    if faces:
        box = expand_box(faces[0], rgb.shape[0], rgb.shape[1], 0.3)
        rgb = rgb[box.y0:box.y1, box.x0:box.x1]
    side = min(rgb.shape[:2])
    y0, x0 = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    square = Image.fromarray(np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side]))
    return np.array(square.resize((size, size), Image.LANCZOS))  # a writable copy for torch


def kernel_figure(rgb: np.ndarray, factor: float = 0.25, columns: int = 3) -> Image.Image:
    """A labelled grid: the original, then the image degraded by ``factor`` with each kernel."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    tiles = [("original (ratio 1)", x)]
    for kernel in KERNELS:
        y, true = degrade(x, factor, kernel, kernel)
        tiles.append((f"{kernel} (ratio {true:.2f})", y.clamp(0, 1)))
    size, label_h, pad = rgb.shape[0], 22, 6
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (size + pad) + pad, rows * (size + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, t) in enumerate(tiles):
        r, c = divmod(i, columns)
        left, top = pad + c * (size + pad), pad + r * (size + label_h + pad)
        tile = (t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        sheet.paste(Image.fromarray(tile), (left, top + label_h))
        draw.text((left + 2, top + 4), name, fill="black")
    return sheet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_FACE, help="a face photo")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "kernels.png")
    parser.add_argument("--size", type=int, default=256, help="tile side in pixels")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        print(f"error: {args.image} not found (pass --image FACE.jpg)", file=sys.stderr)
        return 2
    sheet = kernel_figure(face_crop(args.image, args.size))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
