"""effres_core.evaluation.estimate: the image count and time of an evaluation, said before it runs."""

import time

import numpy as np
import torch
from PIL import Image

from effres_core.evaluation import evalsets as es
from effres_core.evaluation import transforms as tf
from effres_core.evaluation.estimate import RunEstimate, estimate_run, format_duration

SPEC = es.SuiteSpec(mixed=tf.FLAVOURS, ladders=("bicubic",), families=("gaussian_blur",), robustness=("jpeg",))


def _faces(tmp_path, n=3, size=96):
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp_path / f"f{i}.png")
    return es.load_sharp_faces(tmp_path, max_side=64, min_side=48, halve=False, detector="centre")


class SlowScorer:
    """Takes ``delay`` seconds per call of one image, whatever the image."""

    def __init__(self, delay):
        self.delay = delay

    def __call__(self, images):
        time.sleep(self.delay * images.shape[0])
        return torch.full((images.shape[0],), 0.5)


def test_counts_every_image_of_the_run_and_times_each_scorer(tmp_path):
    faces = _faces(tmp_path)
    estimate = estimate_run({"slow": SlowScorer(0.05), "fast": SlowScorer(0.0)}, faces, SPEC)
    built = sum(len(g.build(faces)) for g in SPEC.groups(len(faces), 64))  # what the run would score
    assert estimate.n_faces == 3 and estimate.images_per_scorer == built
    assert 0.05 <= estimate.seconds_per_image["slow"] < 0.5 and estimate.seconds_per_image["fast"] < 0.05
    assert abs(estimate.seconds - built * sum(estimate.seconds_per_image.values())) < 1e-9
    line = estimate.describe()
    assert line.startswith(f"3 faces -> {built} images per scorer; slow 0.0") and "about" in line


def test_no_faces_and_durations():
    assert estimate_run({"x": SlowScorer(0)}, []).seconds == 0
    assert [format_duration(s) for s in (12, 600, 9000)] == ["12 s", "10 min", "2.5 h"]
    assert RunEstimate(9, 1512, {"effres": 6.0}).describe().endswith("about 2.5 h")


def test_cli_estimate_only_prints_and_stops(tmp_path, tiny_model_dir, capsys):
    from effres_core.cli import main

    (tmp_path / "sharp").mkdir()
    _faces(tmp_path / "sharp", n=2)
    code = main(["evaluate", str(tmp_path / "sharp"), "--model", str(tiny_model_dir), "--baselines",
                 "--estimate-only", "--max-side", "64", "--min-side", "48", "--detector", "centre"])
    out, err = capsys.readouterr()
    assert code == 0 and out == ""  # no report: nothing was evaluated
    assert "effres evaluate: 2 faces -> " in err and "images per scorer; effres " in err and "about" in err
