"""The example input images the shipped workflows load, put into ComfyUI's input folder.

``LoadImage`` reads only ComfyUI's input folder (``folder_paths.get_input_directory()``, which
``--input-directory`` moves), so when the pack loads it copies its example images there, once,
under names starting with ``effres_example_``. A file of that name that is already there is never
overwritten. Set ``EFFRES_NO_EXAMPLE_INPUTS=1`` to skip the copy.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger("effres")

ROOT = Path(__file__).resolve().parents[1]
#: input-folder name -> file in this repository
EXAMPLE_INPUTS = {
    "effres_example_face.jpg": ROOT / "examples" / "faces" / "photo_sharp.jpg",
    "effres_example_two_faces.jpg": ROOT / "examples" / "faces" / "two_faces.jpg",
}


def install_example_inputs(input_dir: str | os.PathLike | None = None) -> list[Path]:
    """Copy the example images into ``input_dir`` (default: ComfyUI's input folder) where missing;
    returns the files copied. Never raises: a read-only or missing folder is logged and skipped."""
    if os.environ.get("EFFRES_NO_EXAMPLE_INPUTS"):
        return []
    if input_dir is None:
        try:
            import folder_paths

            input_dir = folder_paths.get_input_directory()
        except ImportError:
            return []
    copied = []
    try:
        target = Path(input_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name, source in EXAMPLE_INPUTS.items():
            dest = target / name
            if dest.exists() or not source.is_file():
                continue
            shutil.copyfile(source, dest)
            copied.append(dest)
    except OSError as err:
        logger.warning("effres: could not copy the example images into %s: %s", input_dir, err)
    if copied:
        logger.info("effres: example images copied into %s: %s", input_dir, ", ".join(p.name for p in copied))
    return copied
