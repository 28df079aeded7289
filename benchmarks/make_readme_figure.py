"""Draw docs/images/heatmap_example.png: each bundled example face next to its patch-score heatmap.

    python benchmarks/make_readme_figure.py [--model ID] [--out docs/images/heatmap_example.png]
"""

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from effres_core import EffRes  # noqa: E402
from effres_core.measure.heatmap import render_result  # noqa: E402
from effres_core.measure.imageio import load_image  # noqa: E402

EXAMPLES = ("portrait_sharp.jpg", "portrait_4x_upscaled.jpg")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model id (default: the bundled model)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "heatmap_example.png"))
    parser.add_argument("--side", type=int, default=384, help="height of each tile in the figure")
    args = parser.parse_args(argv)
    model = EffRes.from_pretrained(args.model, device="cpu")
    tiles = []
    for name in EXAMPLES:
        rgb = load_image(ROOT / "examples" / "faces" / name)
        result = model.score(rgb)
        for img in (rgb, render_result(result, rgb)):
            tile = Image.fromarray(img).resize((args.side * img.shape[1] // img.shape[0], args.side), Image.LANCZOS)
            tiles.append((tile, f"{name}: y = {result.ratio:.2f}" if img is not rgb else name))
        print(f"{name}: ratio {result.ratio:.3f}, effective resolution {result.effective_resolution}")
    width = sum(t.width for t, _ in tiles)
    canvas = Image.new("RGB", (width, args.side + 24), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for tile, label in tiles:
        canvas.paste(tile, (x, 24))
        draw.text((x + 4, 5), label, fill=(0, 0, 0))
        x += tile.width
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
