"""The paper's Table 1 as config: every hyperparameter is a key of train/configs/paper.yaml with the
paper's value, and the trainer honours each one (tiny random nets, no data folders)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train/ is a folder of scripts, not an installed package

from effres_core.gradient.adversarial import l2_pgd  # noqa: E402
from effres_core.model.net import EffResNet  # noqa: E402
from train import data  # noqa: E402
from train import run as train_run  # noqa: E402
from train.data import FaceSample, SampleSettings, make_sample  # noqa: E402

# Table 1 of Kansy et al. 2023 (and ../shared/docs/paper-recipe.md), key by key.
PAPER_TABLE_1 = {
    "backbone": "resnet50",
    "imagenet": True,
    "loss": "mape",
    "kernels": ["area", "bicubic", "bilinear", "gaussian", "lanczos3", "lanczos5", "mitchellcubic", "nearest"],
    "min_factor": 0.0625,
    "max_factor": 1.0,
    "degrade_probability": 0.9,
    "prescale_height": [384, 2048],
    "prescale_probability": 0.8,
    "patch_size": 256,
    "stride": 128,
    "random_offset": True,
    "min_foreground": 0.5,
    "mask": True,
    "inference_patches": 100,
    "inference_min_foreground": 0.9,
    "aggregation": "median",
    "adversarial": "pgd",
    "pgd_steps": 10,
    "pgd_step_size": 30.0,
    "pgd_linf": 10.0,
    "pgd_random_init": False,
    "adversarial_ratio": 1.0,
    "regular_weight": 1.0,
    "adversarial_weight": 1.0,
    "micro_batch": 4,
    "effective_batch": 512,
    "epochs": 10,
    "lr": 0.001,
    "lr_decay": 0.9,
    "adam_betas": [0.9, 0.999],
    "adam_eps": 1.0e-8,
}


def test_paper_yaml_names_every_table_1_value_explicitly():
    written = yaml.safe_load((ROOT / "train" / "configs" / "paper.yaml").read_text())
    missing = sorted(set(PAPER_TABLE_1) - set(written))
    assert not missing, f"paper.yaml does not name {missing}"
    for key, value in PAPER_TABLE_1.items():
        assert written[key] == pytest.approx(value) if isinstance(value, float) else written[key] == value, key
    config = train_run.load_config(str(ROOT / "train" / "configs" / "paper.yaml"), {})
    assert set(PAPER_TABLE_1) <= set(train_run.DEFAULTS) and config["loss"] == "mape"


def test_cpu_yaml_loads_and_differs_only_where_it_says():
    config = train_run.load_config(str(ROOT / "train" / "configs" / "cpu.yaml"), {})
    assert config["kernels"] == PAPER_TABLE_1["kernels"] and config["degrade_probability"] == 0.9


def test_table_3_rows_are_overrides():
    """A reader runs an ablation row by overriding keys on the command line."""
    args = train_run.parse_args(["--loss", "msle", "--kernels", "bicubic", "nearest", "--mask", "false",
                                 "--aggregation", "mean", "--adversarial-ratio", "0.5", "--adam-betas", "0.8",
                                 "0.99", "--pgd-random-init", "true", "--degrade-probability", "0.5"])
    config = train_run.load_config(str(ROOT / "train" / "configs" / "paper.yaml"),
                                   {k: v for k, v in vars(args).items() if k in train_run.DEFAULTS})
    assert config["loss"] == "msle" and config["kernels"] == ["bicubic", "nearest"] and config["mask"] is False
    assert config["aggregation"] == "mean" and config["adversarial_ratio"] == 0.5
    assert config["adam_betas"] == [0.8, 0.99] and config["pgd_random_init"] is True
    assert config["degrade_probability"] == 0.5 and config["backbone"] == "resnet50"  # the rest stays the paper's


@pytest.mark.parametrize("bad", [{"loss": "huber"}, {"aggregation": "max"}, {"adversarial_ratio": 1.5},
                                 {"adversarial_weight": -1.0}, {"inference_patches": 0}])
def test_bad_values_are_rejected(bad):
    with pytest.raises(ValueError):
        train_run.load_config(None, bad)


def test_bad_kernel_names_are_rejected():
    with pytest.raises(ValueError, match="kernels"):
        SampleSettings(kernels=("bicubic", "sinc"))
    with pytest.raises(ValueError, match="max_factor"):
        SampleSettings(min_factor=0.5, max_factor=0.4)


# ---- losses --------------------------------------------------------------------------------------
def test_losses_compute_their_formulas():
    pred, y = torch.tensor([0.5, 1.0, -0.2]), torch.tensor([0.25, 0.8, 0.5])
    assert float(train_run.LOSSES["mape"](pred, y)) == pytest.approx((1.0 + 0.25 + 1.4) / 3, rel=1e-5)
    assert float(train_run.LOSSES["mae"](pred, y)) == pytest.approx((0.25 + 0.2 + 0.7) / 3, rel=1e-5)
    assert float(train_run.LOSSES["mse"](pred, y)) == pytest.approx((0.0625 + 0.04 + 0.49) / 3, rel=1e-5)
    msle = ((math.log(1.5) - math.log(1.25)) ** 2 + (math.log(2.0) - math.log(1.8)) ** 2
            + (0 - math.log(1.5)) ** 2) / 3  # negative predictions count as 0
    assert float(train_run.LOSSES["msle"](pred, y)) == pytest.approx(msle, rel=1e-5)


def _bare_trainer(net, accum=1, **config):
    t = train_run.Trainer.__new__(train_run.Trainer)
    t.config = {**train_run.DEFAULTS, "channels_last": False, "bf16": False, **config}
    t.device, t.net, t.model, t.accum, t.world_size = torch.device("cpu"), net, net, accum, 1
    return t


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    net = EffResNet(patch_size=32, width=0.25)
    for i, layer in enumerate(net.features):  # no BatchNorm: gradients add up exactly
        if isinstance(layer, torch.nn.BatchNorm2d):
            net.features[i] = torch.nn.Identity()
    return net


@pytest.mark.parametrize("loss", ["mape", "mae", "mse", "msle"])
def test_trainer_uses_the_configured_loss(loss):
    net = _tiny_net()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0.2, 0.4, 0.6, 1.0])
    trainer = _bare_trainer(net, loss=loss, adversarial="none")
    with torch.no_grad():
        assert float(trainer._loss(x, y)) == pytest.approx(float(train_run.LOSSES[loss](net(x), y)), rel=1e-5)


# ---- the adversarial step: ratio, weights, random start -------------------------------------------
def test_adversarial_ratio_spreads_twins_evenly():
    for ratio, expected in ((1.0, 8), (0.5, 4), (0.25, 2), (0.0, 0)):
        trainer = _bare_trainer(_tiny_net(), adversarial_ratio=ratio)
        assert sum(trainer.has_twin(i) for i in range(8)) == expected
    assert not _bare_trainer(_tiny_net(), adversarial="none").has_twin(0)


def _grads(net):
    return [p.grad.clone() for p in net.parameters()]


def test_loss_weights_scale_the_two_steps():
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0.2, 0.4, 0.6, 1.0])
    common = dict(adversarial="pgd", pgd_steps=1, pgd_step_size=15.0)
    runs = {}
    for name, cfg in {"clean_only": dict(adversarial="none"), "both": {},
                      "adv_zero": dict(adversarial_weight=0.0), "double": dict(regular_weight=2.0, adversarial_weight=2.0),
                      "no_twin": dict(adversarial_ratio=0.0)}.items():
        net = _tiny_net()
        _bare_trainer(net, **{**common, **cfg}).micro_step(x, y, index=0)
        runs[name] = _grads(net)
    for a, b, c, d, e in zip(runs["clean_only"], runs["adv_zero"], runs["both"], runs["double"], runs["no_twin"]):
        assert torch.allclose(a, b, atol=1e-7) and torch.allclose(a, e, atol=1e-7)  # weight 0 or no twin: clean only
        assert torch.allclose(d, 2 * c, rtol=1e-4, atol=1e-7)
    assert any(not torch.allclose(a, c) for a, c in zip(runs["clean_only"], runs["both"]))


def test_pgd_random_init_starts_inside_the_ball():
    x = torch.rand(3, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    start = l2_pgd(lambda z: z.sum(dim=(1, 2, 3)), x, steps=0, linf=10.0, random_init=True, generator=g)
    assert not torch.equal(start, x) and (start - x).abs().max() <= 10 / 255 + 1e-6
    assert 0 <= float(start.min()) and float(start.max()) <= 1
    assert torch.equal(l2_pgd(lambda z: z.sum(dim=(1, 2, 3)), x, steps=0, linf=10.0), x)  # the paper: no random start
    with pytest.raises(ValueError, match="linf"):
        l2_pgd(lambda z: z.sum(), x, steps=1, linf=None, random_init=True)


def test_trainer_passes_random_init_to_the_attack():
    seen = {}

    def fake_pgd(objective, x, **kwargs):
        seen.update(kwargs)
        return x

    trainer = _bare_trainer(_tiny_net(), pgd_random_init=True)
    with mock.patch.object(train_run, "l2_pgd", fake_pgd):
        trainer.adversarial(torch.rand(2, 3, 32, 32), torch.full((2,), 0.5))
    assert seen["random_init"] is True and seen["steps"] == trainer.config["pgd_steps"]


# ---- sampling keys -------------------------------------------------------------------------------
def _face(h=96, w=96, seed=0, mask=None):
    rng = np.random.default_rng(seed)
    return FaceSample("f", rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                      np.ones((h, w), np.float32) if mask is None else mask)


def _kernels_used(s: SampleSettings, seeds=range(12)) -> list[str]:
    used = []
    real = data.resize_antialiased

    def resize(x, size, kernel):
        used.append(kernel)
        return real(x, size, kernel)

    with mock.patch.object(data, "resize_antialiased", resize):
        for seed in seeds:
            make_sample(_face(seed=seed), np.random.default_rng(seed), s, nuisances=False)
    return used


def test_kernels_key_limits_the_resizers():
    base = dict(patch_size=32, stride=32, prescale_probability=0.0, degrade_probability=1.0)
    assert set(_kernels_used(SampleSettings(**base, kernels=("nearest",)))) == {"nearest"}
    assert len(set(_kernels_used(SampleSettings(**base), seeds=range(40)))) > 4  # default: all 8


def test_factor_range_and_probabilities():
    s = SampleSettings(patch_size=32, stride=32, prescale_probability=0.0, degrade_probability=1.0,
                       min_factor=0.5, max_factor=0.6, nuisance_probability=0.0)
    labels = [float(make_sample(_face(seed=i), np.random.default_rng(i), s, nuisances=False)[1][0]) for i in range(20)]
    assert all(0.5 - 1 / 64 <= v <= 0.6 + 1 / 64 for v in labels)
    never = SampleSettings(patch_size=32, stride=32, prescale_probability=0.0, degrade_probability=0.0)
    assert all(float(make_sample(_face(seed=i), np.random.default_rng(i), never, nuisances=False)[1][0]) == 1.0
               for i in range(10))
    with mock.patch.object(data, "_prescale", side_effect=AssertionError("prescaled")):
        for i in range(10):
            make_sample(_face(seed=i), np.random.default_rng(i), never, nuisances=False)


def test_random_offset_off_starts_the_grid_at_the_window_corner():
    face = _face(64, 64)
    s = SampleSettings(patch_size=32, stride=32, window_patches=2, patches_per_image=4, prescale_probability=0.0,
                       degrade_probability=0.0, random_offset=False)
    patches, _ = make_sample(face, np.random.default_rng(0), s, nuisances=False)
    img = torch.from_numpy(face.rgb).permute(2, 0, 1).float() / 255
    corners = {tuple(img[:, y:y + 32, x:x + 32].flatten()[:8].tolist()) for y in (0, 32) for x in (0, 32)}
    assert patches.shape[0] == 4 and {tuple(p.flatten()[:8].tolist()) for p in patches} == corners


def test_min_foreground_and_mask_keys():
    h = w = 64
    half = np.zeros((h, w), np.float32)
    half[:, :24] = 1  # the left patches are 75% face, the right ones 0%
    base = dict(patch_size=32, stride=32, window_patches=2, patches_per_image=4, prescale_probability=0.0,
                degrade_probability=0.0, random_offset=False)
    face = _face(h, w, mask=half)
    kept = lambda **kw: make_sample(face, np.random.default_rng(0), SampleSettings(**base, **kw), nuisances=False)[0]
    assert kept(min_foreground=0.5).shape[0] == 2
    assert kept(min_foreground=0.8).shape[0] == 0
    assert kept(min_foreground=0.8, mask=False).shape[0] == 4  # unmasked: every pixel is face


def test_trainer_builds_its_sampler_from_the_config(tmp_path):
    config = train_run.load_config(None, {"kernels": ["area"], "degrade_probability": 0.3, "prescale_probability": 0.1,
                                          "max_factor": 0.7, "random_offset": False, "min_foreground": 0.7,
                                          "mask": False, "adam_betas": [0.8, 0.9], "adam_eps": 1e-6,
                                          "backbone": "tiny", "imagenet": False, "patch_size": 32,
                                          "prescale_height": [64, 128], "data": "unused"})
    fake = [_face()]
    with mock.patch.object(train_run, "load_faces", return_value=(fake, [])):
        trainer = train_run.Trainer(config, tmp_path, torch.device("cpu"))
    s = trainer.settings
    assert s.kernels == ("area",) and s.degrade_probability == 0.3 and s.prescale_probability == 0.1
    assert s.max_factor == 0.7 and s.random_offset is False and s.min_foreground == 0.7 and s.mask is False
    group = trainer.optimizer.param_groups[0]
    assert group["betas"] == (0.8, 0.9) and group["eps"] == 1e-6


def test_validation_scores_with_the_inference_keys(tmp_path):
    config = train_run.load_config(None, {"backbone": "tiny", "imagenet": False, "patch_size": 32,
                                          "prescale_height": [64, 128], "data": "unused", "val_data": "v",
                                          "inference_patches": 7, "aggregation": "mean", "val_batches": 1})
    with mock.patch.object(train_run, "load_faces", return_value=([_face()], [])):
        trainer = train_run.Trainer(config, tmp_path, torch.device("cpu"))
    made = {}

    class FakeScorer:
        def __init__(self, net, **kwargs):
            made.update(kwargs)

    with mock.patch("effres_core.evaluation.RatioScorer", FakeScorer), \
            mock.patch("effres_core.evaluation.quick_validation", return_value={"folder_srcc": 0.5}):
        metrics = trainer.validate()
    assert made["n_patches"] == 7 and made["reduce"] == "mean" and metrics["folder_srcc"] == 0.5


def test_init_weights_starts_from_a_saved_model(tmp_path):
    from effres_core.model import hub

    torch.manual_seed(5)
    start = EffResNet(patch_size=32, width=0.25)
    hub.save_pretrained(start, tmp_path / "start")
    config = train_run.load_config(None, {"backbone": "tiny", "imagenet": False, "patch_size": 32,
                                          "prescale_height": [64, 128], "data": "unused",
                                          "init_weights": str(tmp_path / "start")})
    with mock.patch.object(train_run, "load_faces", return_value=([_face()], [])):
        trainer = train_run.Trainer(config, tmp_path / "run", torch.device("cpu"))
    assert hub.state_dict_equal(trainer.net, start)
    wrong = dict(config, patch_size=64, prescale_height=[64, 128])
    with mock.patch.object(train_run, "load_faces", return_value=([_face()], [])), pytest.raises(ValueError, match="init_weights"):
        train_run.Trainer(wrong, tmp_path / "run2", torch.device("cpu"))
