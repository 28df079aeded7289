"""Fresh-venv installs with the facexlib extra (slow, needs the package index): run with --runslow."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_facexlib_extra_keeps_cv2_and_json_working(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_extras_install.py"), "--orders", "extra",
                           "after", "--keep", str(tmp_path)], capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" ok ") == 2
