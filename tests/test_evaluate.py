import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from effres_core import evaluation as ev
from effres_core.evaluation import runner
from effres_core.evaluation import evalsets as es
from effres_core.evaluation import transforms as tf
from effres_core.evaluation.baselines import laplacian_variance
from effres_core.model.net import EffResNet

# Crop sizes of the tiny sets: small enough to be fast, large enough for 32 px patches.
SIDE = 64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP waits dominate."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_faces(folder, n=2, size=96):
    """Fake sharp 'faces': random texture with edges, saved as PNG (lossless)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        yy, xx = np.mgrid[0:size, 0:size] / size
        base = 0.5 + 0.2 * np.sin(2 * np.pi * (3 + i) * xx) * np.cos(2 * np.pi * 2 * yy)
        img = np.clip(base[..., None] + 0.25 * rng.random((size, size, 3)), 0, 1)
        img[size // 3:size // 2, size // 4:3 * size // 4] = [0.9, 0.2, 0.1]
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"face_{i}.png")
    return folder


def _faces(tmp_path, n=2):
    return es.load_sharp_faces(_write_faces(tmp_path / "sharp", n), max_side=SIDE, min_side=48, halve=False,
                               detector="centre")


def _tiny_net():
    torch.manual_seed(0)
    return EffResNet(patch_size=32, width=0.25).eval()


TINY_SPEC = es.SuiteSpec(mixed=tf.FLAVOURS, ladders=("bicubic", "nearest"), families=("gaussian_blur", "opencv_cubic"),
                         robustness=("jpeg",))


# ------------------------------------------------------------------------------------------ sets

def test_load_sharp_faces_crops_caps_and_skips(tmp_path):
    folder = _write_faces(tmp_path / "sharp", 2, size=120)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(folder / "tiny.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    faces = es.load_sharp_faces(folder, max_side=50, min_side=40, halve=True, detector="centre")
    assert [f.name for f in faces] == ["face_0", "face_1"]  # tiny and broken skipped, sorted
    assert all(tuple(f.image.shape) == (1, 3, 50, 50) for f in faces)  # halved to 60, capped to 50
    with pytest.raises(FileNotFoundError):
        es.load_sharp_faces(tmp_path / "empty", detector="centre")


def test_mixed_factors_are_stratified():
    f = es.mixed_factors(np.random.default_rng(1))
    assert len(f) == 10 and f[-1] == 1.0
    edges = np.exp(np.linspace(np.log(0.1), 0, 11))
    assert all(edges[i] <= f[i] <= edges[i + 1] for i in range(10))


def test_resample_reports_the_true_factor():
    x = torch.rand(1, 3, 60, 40)
    out, truth = tf.resample(x, 0.3, "opencv_cubic", "pillow_hamming")
    assert out.shape == x.shape and truth == pytest.approx(18 / 60)
    assert tf.resample(x, 1.0, "bicubic", "bicubic") == (x, 1.0)
    with pytest.raises(ValueError):
        tf.resample(x, 0.5, "nope", "bicubic")


@pytest.mark.parametrize("flavour", tf.FLAVOURS)
def test_mixed_folder_is_deterministic_and_uses_its_flavour(tmp_path, flavour):
    faces = _faces(tmp_path, 1)
    group = es.EvalGroup("mixed", flavour, 0, seed=3, min_side=40)
    a, b = group.build(faces), group.build(faces)
    assert len(a) == 10
    assert all(torch.equal(x.image, y.image) and x.truth == y.truth for x, y in zip(a, b))
    truths = sorted(it.truth for it in a)
    assert truths[-1] == 1.0 and truths[0] < 0.2 and len(set(truths)) == 10
    for it in a:
        assert it.image.min() >= 0 and it.image.max() <= 1
        assert torch.equal(it.image, tf.quantize(it.image))  # 8-bit, like a file
    notes = " ".join(it.note for it in a)
    allowed = set(tf.UNSEEN_RESIZERS) if flavour == "unseen" else set(tf.KERNELS)
    used = {w.split("=")[1] for w in notes.split() if w.startswith(("down=", "up="))}
    assert used and used <= allowed
    other = es.EvalGroup("mixed", flavour, 0, seed=4, min_side=40).build(faces)
    assert any(not torch.equal(x.image, y.image) for x, y in zip(a, other))


def test_unseen_nuisances_keep_shape_and_range():
    x = torch.rand(1, 3, 40, 40)
    for name, fn in tf.UNSEEN_NUISANCES.items():
        out = fn(x, np.random.default_rng(0))
        assert out.shape == x.shape, name
        assert out.min() >= 0 and out.max() <= 1, name


def test_families_order_strength(tmp_path):
    faces = _faces(tmp_path, 1)
    for name in ("gaussian_blur", "defocus", "noise_downscale"):
        items = es.EvalGroup("family", name, 0).build(faces)
        truths = [it.truth for it in items]
        assert truths == sorted(truths, reverse=True) and truths[0] == 1.0
    with pytest.raises(ValueError, match="unknown family"):
        es.SuiteSpec(families=("nope",)).groups(1)


# --------------------------------------------------------------------------------------- metrics

def test_summarize_oracle_is_perfect():
    """A scorer that knows the truth gets SRCC = PRA = 1 and no error: the aggregation is right."""
    rng = np.random.default_rng(0)
    results = []
    for kind, name in (("mixed", "unseen"), ("mixed", "seen"), ("ladder", "bicubic"), ("family", "defocus")):
        for face in ("a", "b"):
            truths = sorted(rng.uniform(0.1, 1, size=7).tolist())
            results.append(ev.GroupResult(kind, name, face, truths, [""] * 7, {"oracle": truths,
                                                                                "reverse": [-t for t in truths]}))
    rep = ev.summarize(results, "oracle", is_ratio=True)
    for flavour in ("unseen", "seen", "all"):
        m = rep["mixed"][flavour]
        assert m["folder_srcc"] == pytest.approx(1) and m["folder_pra"] == 1 and m["pooled_srcc"] == pytest.approx(1)
        assert m["mae"] == 0 and m["within_0.1"] == 1
    assert rep["ladders"]["bicubic"] == pytest.approx(1) and rep["families"]["defocus"] == pytest.approx(1)
    bad = ev.summarize(results, "reverse", is_ratio=False)
    assert bad["mixed"]["all"]["folder_srcc"] == pytest.approx(-1) and bad["mixed"]["all"]["folder_pra"] == 0
    assert "mae" not in bad["mixed"]["all"]


def test_score_images_batches_by_size_and_marks_failures():
    calls = []

    def scorer(x):
        calls.append(tuple(x.shape))
        if x.shape[-1] < 20:
            raise ValueError("too small")
        return x.mean(dim=(1, 2, 3))

    imgs = [torch.full((1, 3, 32, 32), 0.1), torch.full((1, 3, 16, 16), 0.2), torch.full((1, 3, 32, 32), 0.3)]
    out = ev.score_images(scorer, imgs)
    assert out[0] == pytest.approx(0.1) and math.isnan(out[1]) and out[2] == pytest.approx(0.3)
    assert sorted(calls) == [(1, 3, 16, 16), (2, 3, 32, 32)]


# ------------------------------------------------------------------------------------ end to end

def test_evaluate_many_model_and_baselines(tmp_path):
    faces = _faces(tmp_path)
    net = _tiny_net()
    reports = ev.evaluate_many({"effres": ev.model_scorer(net, n_patches=4)}, "sharp", baselines=True,
                               spec=TINY_SPEC, faces=faces, progress=False)
    assert set(reports) == {"effres", "laplacian_variance", "high_frequency_share", "jpeg_bytes_per_pixel"}
    model = reports["effres"]
    assert model["is_ratio"] and not reports["laplacian_variance"]["is_ratio"]
    assert set(model["mixed"]) == {"seen", "unseen", "all"}
    assert model["mixed"]["all"]["n_folders"] == 4
    assert 0 <= model["mixed"]["all"]["mae"] <= 1
    assert set(model["ladders"]) == {"bicubic", "nearest"}
    assert len(model["points"]) == 40
    lap = reports["laplacian_variance"]
    assert lap["ladders"]["bicubic"] == pytest.approx(1.0)  # a plain ladder is easy for the Laplacian
    for r in reports.values():
        for v in [*r["ladders"].values(), *r["families"].values(), r["mixed"]["all"]["folder_srcc"]]:
            assert -1 <= v <= 1
    md = ev.format_markdown(reports)
    assert "laplacian_variance" in md and "gaussian_blur" in md and "| unseen |" in md
    json.dumps(ev.jsonable(reports), allow_nan=False)
    assert not net.training


def test_ratio_scorer_restores_training_mode():
    net = _tiny_net().train()
    scorer = ev.model_scorer(net, n_patches=2)
    out = scorer(torch.rand(2, 3, 40, 40))
    assert out.shape == (2,) and net.training
    with pytest.raises(TypeError):
        ev.model_scorer(42)


def test_quick_validation_caches(tmp_path, monkeypatch):
    folder = _write_faces(tmp_path / "sharp", 2)
    scorer = ev.model_scorer(_tiny_net(), n_patches=2)
    monkeypatch.setattr(runner, "_QUICK_CACHE", {})
    first = ev.quick_validation(scorer, folder, tmp_path / "cache", max_side=SIDE, min_side=48)
    assert len(list((tmp_path / "cache").glob("quick_validation_*.pt"))) == 1
    for key in ("folder_srcc", "folder_pra", "pooled_srcc", "mae", "unseen_folder_srcc", "seen_folder_pra"):
        assert key in first and math.isfinite(first[key])
    monkeypatch.setattr(runner, "_QUICK_CACHE", {})  # a new process: only the file cache is left
    second = ev.quick_validation(scorer, folder, tmp_path / "cache", max_side=SIDE, min_side=48)
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in second.items() if k != "seconds"}


def test_labels_csv(tmp_path):
    from effres_core.synthesis.degradations import degrade

    faces = _faces(tmp_path)
    rows = ["folder,path,label"]
    for i, face in enumerate(faces):
        for label, f in ((3, 1.0), (2, 0.5), (1, 0.25)):
            img = degrade(face.image, f, "bicubic")[0] if f < 1 else face.image
            path = tmp_path / "labelled" / f"{i}_{label}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray((img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
            rows.append(f"person{i},labelled/{path.name},{label}")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    out = ev.evaluate_labels({"lap": laplacian_variance}, csv_path, detector="centre", progress=False)["lap"]
    assert out["n_folders"] == 2 and out["n_images"] == 6
    assert out["folder_srcc"] == pytest.approx(1.0) and out["folder_pra"] == 1.0
    (tmp_path / "bad.csv").write_text("file,score\na.png,1\n")
    with pytest.raises(ValueError, match="'path' and 'label'"):
        ev.read_labels(tmp_path / "bad.csv")


def _cli(argv):
    """Run ``effres evaluate`` through its own parser (independent of the other subcommands)."""
    import argparse

    from effres_core.cli import evaluate as cli_evaluate

    parser = argparse.ArgumentParser(prog="effres")
    cli_evaluate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_evaluate(tmp_path, capsys):
    from effres_core.model.hub import save_pretrained

    folder = _write_faces(tmp_path / "sharp", 1, size=SIDE)
    model_dir = save_pretrained(_tiny_net(), tmp_path / "model")
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    code = _cli(["evaluate", str(folder), "--model", str(model_dir), "--baselines", "--max-side", str(SIDE),
                 "--min-side", "48", "--detector", "centre", "--n-patches", "2", "--json", str(out_json),
                 "--markdown", str(out_md), "--quiet"])
    assert code == 0
    reports = json.loads(out_json.read_text())
    assert {"effres", "laplacian_variance"} <= set(reports)
    assert "Plain ladders" in out_md.read_text() and "effres" in capsys.readouterr().out
    assert _cli(["evaluate"]) == 2


def test_plot_ratio_vs_factor(tmp_path):
    report = {"scorer": "x", "points": [[0.1, 0.12, "seen"], [1.0, 0.95, "unseen"], [0.5, float("nan"), "seen"]]}
    path = ev.plot_ratio_vs_factor(report, tmp_path / "img" / "plot.png", size=(200, 160))
    with Image.open(path) as img:
        assert img.size == (200, 160)
        assert len(img.getcolors(10000)) > 3  # something was drawn
