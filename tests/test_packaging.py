"""A built wheel, installed in a fresh venv, carries the bundled default model and scores the examples."""

import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_in_a_fresh_venv_scores_the_examples(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("effres-*.whl"))
    # The venv sees the system's packages (torch, ...) but gets effres only from the wheel.
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True)
    where = subprocess.run([str(python), "-c", "import effres_core.model.hub as h; print(h.BUNDLED_DEFAULT)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where
    assert (Path(where) / "model.safetensors").stat().st_size > 1_000_000

    out = subprocess.run([str(python), "-m", "effres_core", "score", str(ROOT / "examples" / "faces"), "--json"],
                         cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    assert len(rows) == len(list((ROOT / "examples" / "faces").glob("*.jpg")))
    assert all(r["error"] is None and 0 < r["ratio"] <= 1 for r in rows), rows
