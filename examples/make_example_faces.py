"""Rebuild the bundled example faces in examples/faces/ from ../shared/data/faces/val.

A sharp 1024 px portrait (the 2048 px source halved: its JPEG is not pixel-sharp at full size),
its 4x-downscaled-and-upscaled copy (true ratio 0.25), and a real 512 px photo with its 2x copy.
Also ``two_faces.jpg`` (1024 x 512, the ComfyUI example input for the SEGS and best-of graphs):
the sharp photo beside the portrait at 512 px after a 4x down-and-up (a soft face, true ratio 0.25).
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from effres_core.synthesis.degradations import degrade, resize_antialiased  # noqa: E402
from effres_core.measure.imageio import load_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "data" / "faces" / "val"
OUT = ROOT / "examples" / "faces"


def to_tensor(rgb):
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].double() / 255


def save(x, path):
    arr = (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=95)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    portrait = to_tensor(load_image(VAL / "openpeople_P009_studio_portrait.jpg"))
    sharp = resize_antialiased(portrait, (1024, 1024), "area")
    save(sharp, OUT / "portrait_sharp.jpg")
    save(degrade(sharp, 0.25, "bicubic")[0], OUT / "portrait_4x_upscaled.jpg")
    photo = to_tensor(load_image(VAL / "real_pyfeat_0-f1-su-ph.jpg"))
    save(photo, OUT / "photo_sharp.jpg")
    save(degrade(photo, 0.5, "lanczos3", "bilinear")[0], OUT / "photo_2x_upscaled.jpg")
    soft = degrade(resize_antialiased(portrait, (512, 512), "area"), 0.25, "bicubic")[0]
    save(torch.cat([photo, soft], dim=-1), OUT / "two_faces.jpg")


if __name__ == "__main__":
    main()
