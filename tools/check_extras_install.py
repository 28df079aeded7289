"""Does an extra break the base install? Install effres with facexlib into fresh virtual
environments, in each order a user might, then score the examples offline and check stdout is
valid JSON and ``cv2`` imports.

    python tools/check_extras_install.py                     # all orders, venvs under a temp folder
    python tools/check_extras_install.py --orders extra --keep /tmp/venvs

Orders:
- ``extra``: ``pip install -e ".[facexlib]"`` (the extra pins ``opencv-python`` to the same major
  as the base's ``opencv-python-headless``, so both distributions put one OpenCV 4 into ``cv2/``).
- ``after``: ``pip install -e .`` then a plain ``pip install facexlib``, which pulls the newest
  ``opencv-python`` (5.x, no Haar cascade) over ours: scoring must still work (MTCNN needs no OpenCV).
- ``before``: ``pip install facexlib`` first, then ``pip install -e ".[facexlib]"``.

The venvs see the system's site-packages (``--system-site-packages``) so torch is not downloaded
again; everything pip installs for effres and facexlib lands in the venv and shadows the system's.
Needs the package index; prints one line per order and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDERS = {
    "extra": [[".[facexlib]"]],
    "after": [["."], ["facexlib"]],
    "before": [["facexlib"], [".[facexlib]"]],
}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def check(order: str, folder: Path) -> tuple[bool, str]:
    venv = folder / f"venv-{order}"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    if made.returncode:
        return False, f"venv failed: {made.stderr[-500:]}"
    py = str(venv / "bin" / "python")
    for step in ORDERS[order]:
        args = ["-e", str(ROOT) + step[0][1:]] if step[0].startswith(".") else step
        done = _run([py, "-m", "pip", "install", "-q", *args])
        if done.returncode:
            return False, f"pip install {' '.join(args)} failed: {done.stderr[-800:]}"
    cv = _run([py, "-c", "import cv2, effres_core; print(cv2.__version__, 'Haar' if hasattr(cv2, "
                   "'CascadeClassifier') else 'no Haar', effres_core.__file__)"])
    if cv.returncode:
        return False, f"cv2 does not import: {cv.stderr[-500:]}"
    # Offline: no proxy, no hub; a download attempt would fail (and facexlib's weights are absent).
    env = {"PATH": str(venv / "bin"), "HOME": str(folder / "home"), "HF_HUB_OFFLINE": "1",
           "NO_PROXY": "*", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    scored = _run([str(venv / "bin" / "effres"), "score", str(ROOT / "examples" / "faces"), "--json"], env=env)
    try:
        entries = json.loads(scored.stdout)
    except json.JSONDecodeError:
        return False, f"stdout is not JSON (exit {scored.returncode}): {scored.stdout[:300]!r} {scored.stderr[-300:]}"
    ratios = [e["ratio"] for e in entries]
    ok = scored.returncode == 0 and len(entries) == 4 and all(r is not None for r in ratios)
    detector = {e["detector"] for e in entries}
    return ok, f"cv2 {cv.stdout.strip()}; detector {detector}; ratios {[round(r, 3) for r in ratios if r]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", nargs="+", default=list(ORDERS), choices=list(ORDERS))
    ap.add_argument("--keep", type=Path, default=None, help="make the venvs here and keep them")
    args = ap.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for order in args.orders:
            ok, detail = check(order, folder)
            failed += not ok
            print(f"{order:7s} {'ok  ' if ok else 'FAIL'} {detail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
