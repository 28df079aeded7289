"""Training: sample labels, patch filter, determinism, PGD, accumulation, smoke run, resume, export.

Everything runs a tiny random network (``EffResNet(width=0.25)``) on 32 px patches. The runs that
need real faces (Haar must find them) use three downscaled photos of ``../shared/data/faces`` and
are skipped when that folder is absent.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train/ is a folder of scripts, not an installed package

from effres_core.gradient.adversarial import l2_pgd  # noqa: E402
from effres_core.model.net import EffResNet  # noqa: E402
from train import data  # noqa: E402
from train import run as train_run  # noqa: E402
from train.data import BatchStream, FaceSample, SampleSettings, make_batch, make_sample  # noqa: E402

SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"
TRAIN_FILES = ["real_pyfeat_0-f15-hao-ph.jpg", "real_pyfeat_15-f13-anc-ph.jpg", "openpeople_P001_studio_portrait.jpg"]
VAL_FILES = ["real_pyfeat_0-f1-su-ph.jpg"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared, loaded CPU a second thread mostly waits at barriers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _face(h: int = 96, w: int = 96, seed: int = 0, mask: np.ndarray | None = None, level: int | None = None):
    rng = np.random.default_rng(seed)
    rgb = np.full((h, w, 3), level, np.uint8) if level is not None else rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return FaceSample(f"face{seed}", rgb, np.ones((h, w), np.float32) if mask is None else mask)


def _traced_sample(face: FaceSample, seed: int, s: SampleSettings):
    """Run make_sample and record the prescale height and the degradation sizes it chose."""
    seen = {"prescale": [], "resize": []}
    real_prescale, real_resize = data._prescale, data.resize_antialiased

    def prescale(rgb, mask, height):
        seen["prescale"].append((rgb.shape[0], height))
        return real_prescale(rgb, mask, height)

    def resize(x, size, kernel):
        seen["resize"].append((x.shape[-2], size[0]))
        return real_resize(x, size, kernel)

    with mock.patch.object(data, "_prescale", prescale), mock.patch.object(data, "resize_antialiased", resize):
        patches, labels = make_sample(face, np.random.default_rng(seed), s, nuisances=False)
    return patches, labels, seen


def _expected_label(seen) -> float:
    base = 1.0
    if seen["prescale"]:
        native, new = seen["prescale"][0]
        base = min(1.0, native / new)  # upscaling adds no detail
    factor = 1.0
    if seen["resize"]:
        win, small = seen["resize"][0]  # the first resize is the downscale of the window
        factor = small / win
    return min(base, factor)


# ---- label arithmetic ----------------------------------------------------------------------------
@pytest.mark.parametrize("prescale, degrade, heights, kind", [
    (0.0, 0.0, (32, 64), "sharp"),            # neither: label 1
    (1.0, 0.0, (32, 64), "sharp"),            # prescale down only (<= native 96): still fully sharp
    (1.0, 0.0, (160, 300), "upscaled"),       # prescale up only: label = native / new
    (0.0, 1.0, (32, 64), "degraded"),         # degrade only: label = small / window
    (1.0, 1.0, (160, 300), "both"),           # both: the smaller of the two
])
def test_label_combinations(prescale, degrade, heights, kind):
    s = SampleSettings(patch_size=32, stride=32, prescale_probability=prescale, degrade_probability=degrade,
                       prescale_height=heights, nuisance_probability=0.0)
    for seed in range(6):
        patches, labels, seen = _traced_sample(_face(), seed, s)
        assert len(labels) > 0 and patches.shape[1:] == (3, 32, 32)
        label = float(labels[0])
        assert torch.all(labels == labels[0])  # one sample, one label
        assert label == pytest.approx(_expected_label(seen), abs=1e-6)
        if kind == "sharp":
            assert label == 1.0
        elif kind == "upscaled":
            assert label == pytest.approx(96 / seen["prescale"][0][1], abs=1e-6) and label < 1
        elif kind == "degraded":
            assert not seen["prescale"] and label < 1
        else:
            assert seen["prescale"] and label <= 96 / seen["prescale"][0][1] + 1e-6


def test_label_property_based():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=30, deadline=None, derandomize=True)
    @hypothesis.given(seed=st.integers(0, 2**32 - 1), h=st.integers(40, 160), w=st.integers(40, 160),
                      prescale=st.sampled_from([0.0, 0.5, 1.0]), degrade=st.sampled_from([0.0, 0.5, 1.0]),
                      lo=st.integers(16, 128), span=st.integers(0, 200), min_factor=st.sampled_from([1 / 16, 0.5]))
    def check(seed, h, w, prescale, degrade, lo, span, min_factor):
        s = SampleSettings(patch_size=32, stride=32, prescale_probability=prescale, degrade_probability=degrade,
                           prescale_height=(lo, max(lo + span, 32)), min_factor=min_factor)
        patches, labels, seen = _traced_sample(_face(h, w, seed % 1000), seed, s)
        assert patches.shape[0] == labels.shape[0] <= s.patches_per_image
        if len(labels):
            expected = _expected_label(seen)
            assert torch.all((labels > 0) & (labels <= 1))
            assert torch.allclose(labels, torch.full_like(labels, expected), atol=1e-6)
            if seen["resize"]:  # the applied factor is the drawn one up to rounding to whole pixels
                win, small = seen["resize"][0]
                assert small < win and small / win >= min_factor - 0.5 / win
            assert 0 <= float(patches.min()) and float(patches.max()) <= 1

    check()


# ---- the foreground filter -----------------------------------------------------------------------
def test_patches_keep_only_mostly_foreground():
    h = w = 160
    yy, xx = np.mgrid[:h, :w]
    disc = (((yy - 80) ** 2 + (xx - 80) ** 2) < 40 ** 2).astype(np.float32)
    # Pixel value == mask, so a patch's mean is exactly its foreground share.
    face = FaceSample("disc", np.repeat((disc * 255).astype(np.uint8)[..., None], 3, axis=2), disc)
    settings = dict(patch_size=32, stride=16, patches_per_image=8, prescale_probability=0.0, degrade_probability=0.0)
    strict = SampleSettings(**settings)
    loose = SampleSettings(**settings, min_foreground=0.0)
    kept, anything = [], []
    for seed in range(10):
        kept += make_sample(face, np.random.default_rng(seed), strict, nuisances=False)[0].mean(dim=(1, 2, 3)).tolist()
        anything += make_sample(face, np.random.default_rng(seed), loose, nuisances=False)[0].mean(dim=(1, 2, 3)).tolist()
    assert kept and min(kept) >= 0.5 - 1e-6
    assert min(anything) < 0.5  # the filter is what removed those
    empty = FaceSample("empty", face.rgb, np.zeros((h, w), np.float32))
    patches, labels = make_sample(empty, np.random.default_rng(0), strict, nuisances=False)
    assert patches.shape == (0, 3, 32, 32) and labels.shape == (0,)


# ---- determinism and mixing ----------------------------------------------------------------------
def _level_faces(n=6):
    return [_face(96, 96, seed=i, level=20 + 35 * i) for i in range(n)]


def test_make_batch_is_a_function_of_its_inputs():
    faces = [_face(96, 96, seed=i) for i in range(3)]
    s = SampleSettings(patch_size=32, stride=32)
    a, b = make_batch(faces, 7, 8, 3, s), make_batch(faces, 7, 8, 3, s)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (8, 3, 32, 32) and a[1].shape == (8,)
    other = make_batch(faces, 8, 8, 3, s)
    assert not torch.equal(a[0], other[0])
    assert not torch.equal(a[0], make_batch(faces, 7, 8, 4, s)[0])  # the seed matters too


def test_batches_mix_several_images():
    faces = _level_faces()
    s = SampleSettings(patch_size=32, stride=32, patches_per_image=2)
    for index in range(3):
        x, _ = make_batch(faces, index, 16, 0, s, nuisances=False)
        # Constant faces stay constant through prescale and degradation: the level names the source.
        sources = {round((float(p.mean()) * 255 - 20) / 35) for p in x}
        assert len(sources) >= 3, sources


def test_batch_stream_order_does_not_depend_on_workers():
    faces = [_face(96, 96, seed=i) for i in range(3)]
    s = SampleSettings(patch_size=32, stride=32)

    def take(workers, n=4, **kw):
        stream = BatchStream(faces, 4, 5, s, **kw)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == n:
                break
        return out

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        serial = take(0)
        assert torch.get_num_threads() == 2  # workers=0 must not throttle the training process
    finally:
        torch.set_num_threads(threads)
    parallel = take(2)
    torch.set_num_threads(1)  # the stream builds batches with one thread (float sums depend on it)
    reference = [make_batch(faces, i, 4, 5, s)[0] for i in range(4)]
    torch.set_num_threads(threads)
    for i, ((xa, ya), (xb, yb)) in enumerate(zip(serial, parallel)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa, reference[i])
    resumed = take(0, n=2, start=2)  # a resumed run continues with batch 2
    assert torch.equal(resumed[0][0], serial[2][0])
    rank1 = take(0, n=2, rank=1, world_size=2)  # DDP: rank 1 of 2 takes the odd batches
    assert torch.equal(rank1[0][0], serial[1][0]) and torch.equal(rank1[1][0], serial[3][0])


@pytest.mark.parametrize("bad", [dict(prescale_height=(16, 24)), dict(prescale_height=(300, 200)),
                                 dict(min_factor=0.0), dict(degrade_probability=1.5), dict(stride=0)])
def test_sample_settings_reject_bad_values(bad):
    with pytest.raises(ValueError):
        SampleSettings(patch_size=32, **bad)


def test_too_small_faces_fail_clearly():
    s = SampleSettings(patch_size=32, stride=32, prescale_probability=0.0)
    with pytest.raises(RuntimeError, match="enough face patches"):
        make_batch([_face(16, 16)], 0, 4, 0, s)


# ---- PGD -----------------------------------------------------------------------------------------
def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return EffResNet(patch_size=32, width=0.25)


def test_pgd_stays_in_the_ball_and_range_and_raises_the_loss():
    net = _tiny_net().eval()
    torch.manual_seed(1)
    x = torch.rand(4, 3, 32, 32)
    x[:, :, :4] = 1.0  # pixels on the range's edges must stay inside it
    x[:, :, -4:] = 0.0
    y = torch.tensor([0.2, 0.5, 0.8, 1.0])

    def per_image_loss(z):
        return (net(z) - y).abs() / y

    x_adv = l2_pgd(per_image_loss, x, steps=5, step_size=30.0, linf=10.0, pixel_range=255.0)
    assert (x_adv - x).abs().max() <= 10 / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)
    with torch.no_grad():
        assert torch.all(per_image_loss(x_adv) > per_image_loss(x))
    mask = torch.zeros(4, 32, 32)
    mask[:, :, 16:] = 1.0
    x_masked = l2_pgd(per_image_loss, x, steps=3, step_size=30.0, linf=10.0, mask=mask)
    assert torch.equal(x_masked[..., :16], x[..., :16])
    assert not torch.equal(x_masked[..., 16:], x[..., 16:])


def _bare_trainer(net, accum=1, **config):
    """A Trainer with just what micro_step needs (no data folder, no run folder)."""
    t = train_run.Trainer.__new__(train_run.Trainer)
    t.config = {**train_run.DEFAULTS, "channels_last": False, "bf16": False, **config}
    t.device, t.net, t.model, t.accum, t.world_size = torch.device("cpu"), net, net, accum, 1
    return t


def test_attack_freezes_batchnorm_statistics():
    net = _tiny_net().train()
    trainer = _bare_trainer(net, adversarial="pgd", pgd_steps=2, pgd_step_size=15.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.rand(4, 3, 32, 32), torch.full((4,), 0.5)
    x_adv = trainer.adversarial(x, y)
    assert net.training  # restored for the training step
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert (x_adv - x).abs().max() <= 10 / 255 + 1e-6
    assert trainer.adversarial(x, y) is not None
    assert _bare_trainer(net, adversarial="none").adversarial(x, y) is None


@pytest.mark.parametrize("adversarial", ["none", "pgd"])
def test_accumulation_equals_one_big_batch(adversarial):
    # No BatchNorm: in train mode each micro-batch normalises with its own statistics, so accumulated
    # and big-batch gradients differ by design (and the trainer switches BN back to train mode after
    # each attack). Without it, both must match up to float summation order.
    x, y = torch.rand(16, 3, 32, 32), torch.rand(16) * 0.9 + 0.1
    grads = []
    for micro, accum in ((16, 1), (4, 4)):
        net = _tiny_net()
        for i, layer in enumerate(net.features):
            if isinstance(layer, torch.nn.BatchNorm2d):
                net.features[i] = torch.nn.Identity()
        trainer = _bare_trainer(net, accum=accum, adversarial=adversarial, pgd_steps=2, pgd_step_size=15.0)
        for i in range(accum):
            trainer.micro_step(x[i * micro:(i + 1) * micro], y[i * micro:(i + 1) * micro])
        grads.append([p.grad.clone() for p in net.parameters()])
    for big, small in zip(*grads):
        assert torch.allclose(big, small, rtol=1e-4, atol=1e-6)


# ---- real runs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def face_dirs(tmp_path_factory):
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/data/faces is not available")
    from PIL import Image

    root = tmp_path_factory.mktemp("faces")
    for sub, names in (("train", TRAIN_FILES), ("val", VAL_FILES)):
        (root / sub).mkdir()
        for name in names:
            img = Image.open(SHARED_FACES / sub / name).convert("RGB")
            img.thumbnail((256, 256), Image.LANCZOS)  # small: Haar and sampling stay fast
            img.save(root / sub / name, quality=95)
    return root / "train", root / "val"


@pytest.fixture
def clean_process_state():
    """main() installs signal handlers; BatchStream may set threads: undo both after each run."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    yield
    for s, h in handlers.items():
        signal.signal(s, h)
    torch.set_num_threads(threads)


def _run_args(train_dir, val_dir, out, *extra):
    return ["--data", str(train_dir), "--val-data", str(val_dir), "--out", str(out), "--backbone", "tiny",
            "--imagenet", "false", "--patch-size", "32", "--stride", "32", "--window-patches", "2",
            "--micro-batch", "4", "--effective-batch", "8", "--patches-per-epoch", "16", "--epochs", "2",
            "--prescale-height", "64", "192", "--workers", "0", "--adversarial", "pgd", "--pgd-steps", "1",
            "--pgd-step-size", "15", "--channels-last", "false", "--val-batches", "1", "--seed", "3", *extra]


def _copy_cache(src: Path, dst: Path):
    """Reuse the face boxes and masks of an earlier run (the cache is keyed by file content)."""
    (dst / "cache").mkdir(parents=True, exist_ok=True)
    for f in (src / "cache").iterdir():
        if f.is_file():
            (dst / "cache" / f.name).write_bytes(f.read_bytes())


@pytest.fixture(scope="module")
def straight_run(face_dirs, tmp_path_factory):
    """Four optimizer steps over two epochs (validation at steps 2 and 4), never interrupted."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out = tmp_path_factory.mktemp("runs") / "straight"
    assert train_run.main(_run_args(*face_dirs, out)) == 0
    for s, h in handlers.items():
        signal.signal(s, h)
    return out


def test_smoke_run_writes_a_complete_run_folder(straight_run):
    for name in ("config.yaml", "metrics.csv", "last/model.safetensors", "last/config.json", "last/state.pt",
                 "best/model.safetensors"):
        assert (straight_run / name).is_file(), name
    rows = list(csv.DictReader((straight_run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["epoch"]) for r in rows] == [1, 1, 2, 2]
    assert all(np.isfinite(float(r["loss"])) and np.isfinite(float(r["adv_loss"])) for r in rows)
    assert float(rows[2]["lr"]) == pytest.approx(0.9e-3)  # decayed after the first epoch
    assert rows[1]["val_mape"] and rows[3]["val_mape"]  # validated at each epoch end
    last = json.loads((straight_run / "last" / "config.json").read_text())
    assert last["trained_steps"] == 4 and last["width"] == 0.25 and last["patch_size"] == 32


def test_resume_after_interruption_is_bit_identical(straight_run, face_dirs, tmp_path, clean_process_state):
    from safetensors.torch import load_file

    out = tmp_path / "interrupted"
    _copy_cache(straight_run, out)
    assert train_run.main(_run_args(*face_dirs, out, "--max-steps", "2")) == 0
    assert json.loads((out / "last" / "config.json").read_text())["trained_steps"] == 2
    assert train_run.main(["--resume", str(out), "--max-steps", "4"]) == 0
    a, b = load_file(str(straight_run / "last" / "model.safetensors")), load_file(str(out / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(straight_run / "last" / "state.pt", weights_only=True)
    sb = torch.load(out / "last" / "state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 4 and sa["scheduler"] == sb["scheduler"]
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    rows = [int(r["step"]) for r in csv.DictReader((out / "metrics.csv").open())]
    assert rows == [1, 2, 3, 4]


def test_export_is_loadable_and_documented(straight_run, tmp_path):
    from train.export import export_run
    from effres_core.measure.scorer import EffRes

    out = export_run(straight_run, tmp_path / "export")
    for name in ("model.safetensors", "config.json", "MODEL_CARD.md", "README.md"):
        assert (out / name).is_file(), name
    model = EffRes.from_pretrained(out, device="cpu", detector="whole", masker="none")
    assert model.patch_size == 32
    ratio = model.ratio(torch.rand(1, 3, 64, 64))
    assert ratio.shape == (1,) and 0 <= float(ratio) <= 1
    card = (out / "MODEL_CARD.md").read_text()
    assert card == (out / "README.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["pgd_steps"] == 1 and config["checkpoint"] == "best"
    for text in ("Training data", "Recipe", "Validation", "Limits", "| PGD steps (`pgd_steps`) | 1 |", "train` (3 image"):
        assert text in card, text
    val_mape = json.loads((straight_run / "best" / "config.json").read_text())["validation"]["val_mape"]
    assert f"{val_mape:.4g}" in card


def test_export_keeps_a_calibration_and_appends_sections(straight_run, tmp_path):
    from effres_core.model import hub
    from train.export import ExportError, export_run

    net = hub.load_pretrained(straight_run / "best")
    knots = {"x": [0.2, 0.5, 0.7], "y": [0.2, 0.6, 0.95], "fitted_on": "mixed folders of 3 faces in train/",
             "train_mae_before": 0.08, "train_mae_after": 0.04, "train_within_0.1_before": 0.7,
             "train_within_0.1_after": 0.9}
    net.set_calibration(knots)
    hub.save_pretrained(net, tmp_path / "calibrated", extra_config={"calibration": net.config["calibration"]})
    section = tmp_path / "budget.md"
    section.write_text("## Budget\n\nThree minutes on one core.\n")
    out = export_run(straight_run, tmp_path / "export", calibration=tmp_path / "calibrated", append=[section])
    exported = hub.load_pretrained(out)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(exported(x), net(x), atol=1e-6)  # the map travels with the weights
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Calibration" in card and "3 knots" in card and "mixed folders of 3 faces" in card
    assert "0.080 -> 0.040" in card and "70% -> 90%" in card
    assert card.index("## Calibration") < card.index("## Budget") < card.index("Licence: MIT")
    assert "## Calibration" not in export_run(straight_run, tmp_path / "plain").joinpath("MODEL_CARD.md").read_text()
    with pytest.raises(ExportError, match="config.json"):
        export_run(straight_run, tmp_path / "x", calibration=tmp_path / "missing")
    with pytest.raises(ExportError, match="holds no calibration"):
        export_run(straight_run, tmp_path / "y", calibration=straight_run / "best")
    with pytest.raises(ExportError, match="does not exist"):
        export_run(straight_run, tmp_path / "z", append=[tmp_path / "nope.md"])


def test_export_cli_errors_and_push(straight_run, tmp_path, capsys):
    from train import export

    assert export.main([str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id))

        def upload_folder(self, repo_id, folder_path, **kw):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    with mock.patch("huggingface_hub.HfApi", FakeApi):
        assert export.main([str(straight_run), str(tmp_path / "pushed"), "--which", "last",
                            "--push-to-hub", "me/effres-test"]) == 0
    assert calls[0] == ("create", "me/effres-test")
    assert calls[1][2] == ["MODEL_CARD.md", "README.md", "config.json", "model.safetensors"]
    assert json.loads((tmp_path / "pushed" / "config.json").read_text())["checkpoint"] == "last"


def test_bad_data_folders_fail_clearly(face_dirs, tmp_path, clean_process_state):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="no usable face images"):
        train_run.main(_run_args(empty, face_dirs[1], tmp_path / "run-empty"))
    with pytest.raises(SystemExit, match="does not exist"):
        train_run.main(_run_args(tmp_path / "missing", face_dirs[1], tmp_path / "run-missing"))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "broken.jpg").write_bytes(b"this is not a jpeg")
    (mixed / TRAIN_FILES[0]).write_bytes((face_dirs[0] / TRAIN_FILES[0]).read_bytes())
    faces, skipped = data.load_faces(mixed, tmp_path / "cache")
    assert len(faces) == 1 and len(skipped) == 1 and "broken.jpg" in skipped[0]


def test_max_crop_side_shrinks_large_crops_only(face_dirs, tmp_path):
    full, _ = data.load_faces(face_dirs[0], tmp_path / "cache")
    cap = max(min(f.rgb.shape[:2]) for f in full) - 20
    capped, _ = data.load_faces(face_dirs[0], tmp_path / "cache", max_crop_side=cap)
    assert [f.name for f in full] == [f.name for f in capped]
    for a, b in zip(full, capped):
        short = min(a.rgb.shape[:2])
        assert min(b.rgb.shape[:2]) == min(short, cap)
        assert b.mask.shape == b.rgb.shape[:2] and set(np.unique(b.mask)) <= {0.0, 1.0}
        # The same face, smaller: the aspect ratio and the share of face pixels stay.
        assert abs(a.rgb.shape[0] / a.rgb.shape[1] - b.rgb.shape[0] / b.rgb.shape[1]) < 0.01
        assert abs(float(a.mask.mean()) - float(b.mask.mean())) < 0.02


def test_training_faces_can_be_found_with_mtcnn(face_dirs, tmp_path):
    haar, _ = data.load_faces(face_dirs[0], tmp_path / "cache")
    mtcnn, skipped = data.load_faces(face_dirs[0], tmp_path / "cache", detector="mtcnn")
    assert len(mtcnn) == len(TRAIN_FILES) and not skipped
    # Cached per detector: the two runs did not read each other's boxes.
    assert [f.rgb.shape for f in haar] != [f.rgb.shape for f in mtcnn]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == len(haar) + len(mtcnn)
