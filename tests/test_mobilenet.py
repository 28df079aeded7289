"""model.mobilenet: torchvision's MobileNetV2 features without importing torchvision, and the
BatchNorm folding that needs no tracing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import randomise_batchnorm
from effres_core.model.mobilenet import mobilenet_v2_features
from effres_core.model.net import EffResNet, _fold_sequential_pairs, fold_batchnorm


def test_same_layers_names_and_outputs_as_torchvision():
    torchvision = pytest.importorskip("torchvision")
    ours, channels = mobilenet_v2_features()
    theirs = torchvision.models.mobilenet_v2(weights=None).features
    assert channels == 1280
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    theirs = randomise_batchnorm(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(ours.eval()(x), theirs(x), atol=1e-5)


def test_loading_the_default_model_never_imports_torchvision():
    code = ("import sys; from effres_core.measure.scorer import EffRes; m = EffRes.from_pretrained(device='cpu');"
            "print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_direct_folding_matches_the_unfolded_net_and_leaves_no_batchnorm():
    torch.manual_seed(0)
    net = randomise_batchnorm(EffResNet("mobilenet_v2", patch_size=32))
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    y_ref, y = net(x), folded(x)
    assert torch.allclose(y, y_ref, atol=1e-4)
    g_ref, = torch.autograd.grad(y_ref.sum(), x)
    g, = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, g_ref, atol=1e-4)


def test_a_batchnorm_not_after_a_conv_is_left_for_tracing():
    seq = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4)).eval()
    assert _fold_sequential_pairs(seq) is False
