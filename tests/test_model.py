import pytest
import torch

from effres_core.model.net import BACKBONES, EffResNet, fold_batchnorm, scoring_net

from conftest import SHARED, make_tiny_net, randomise_batchnorm


def test_tiny_forward_shape_and_start_value():
    net = make_tiny_net()
    out = net(torch.rand(5, 3, 32, 32))
    assert out.shape == (5,)
    # The head starts near the middle of the label range (bias 0.5, tiny weights).
    assert torch.all((out - 0.5).abs() < 0.1)


def test_same_seed_same_model():
    a, b = make_tiny_net(seed=1), make_tiny_net(seed=1)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_real_backbones_forward(backbone):
    net = EffResNet(backbone, patch_size=32).eval()
    assert net.config == {"backbone": backbone, "patch_size": 32, "width": 1.0}
    assert net.backbone == backbone and net.patch_size == 32
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 32)).shape == (1,)


def test_input_range_is_normalised_inside():
    """The ImageNet normalisation lives in the module: inputs are plain [0, 1] RGB."""
    net = make_tiny_net()
    x = torch.rand(1, 3, 32, 32)
    manual = net.head(net.features((x - net.mean) / net.std).mean(dim=(2, 3))).squeeze(1)
    assert torch.allclose(net(x), manual)


def test_non_contiguous_and_float64_input():
    net = make_tiny_net()
    x = torch.rand(2, 32, 32, 3).permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    assert torch.allclose(net(x), net(x.contiguous()))
    assert net.double()(x.double()).dtype == torch.float64


def test_bad_arguments_and_input():
    with pytest.raises(ValueError, match="backbone"):
        EffResNet("vgg16")
    with pytest.raises(ValueError, match="patch_size"):
        EffResNet(patch_size=8)
    net = make_tiny_net()
    with pytest.raises(ValueError, match="RGB"):
        net(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="RGB"):
        net(torch.rand(3, 32, 32))


def test_gradient_reaches_the_pixels():
    net = make_tiny_net()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.skipif(not (SHARED / "torch-home").is_dir(), reason="no ../shared/torch-home with ImageNet weights")
def test_from_imagenet_offline(monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(SHARED / "torch-home"))
    net = EffResNet.from_imagenet("mobilenet_v2", patch_size=32)
    reference = torchvision.models.mobilenet_v2(weights=torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1)
    assert torch.equal(net.features[0][0].weight, reference.features[0][0].weight)


def _count_batchnorm(net):
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("backbone", ["tiny", "mobilenet_v2"])
def test_fold_batchnorm_same_function_and_input_gradient(backbone):
    torch.manual_seed(0)
    net = make_tiny_net() if backbone == "tiny" else EffResNet(backbone, patch_size=64)
    net = randomise_batchnorm(net).double()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert _count_batchnorm(folded) == 0 and _count_batchnorm(net) > 0
    assert all(not p.requires_grad for p in folded.parameters())
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    y = net(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    y_folded = folded(x)
    (g_folded,) = torch.autograd.grad(y_folded.sum(), x)
    torch.testing.assert_close(y_folded, y)
    torch.testing.assert_close(g_folded, g)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # original untouched
    assert net.training is False and folded.config == net.config


def test_fold_batchnorm_gradcheck():
    net = randomise_batchnorm(make_tiny_net()).double()
    folded = fold_batchnorm(net)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(folded, (x,))


def test_scoring_net_prefers_the_folded_copy():
    from effres_core.measure.scorer import EffRes

    net = make_tiny_net()
    model = EffRes(net, detector="whole", masker="none", device="cpu")
    assert scoring_net(model) is model.inference_net
    assert scoring_net(net) is net
    holder = torch.nn.Module()
    holder.net = net  # anything with only a .net (e.g. a loss wrapping the scorer)
    assert scoring_net(holder) is net
