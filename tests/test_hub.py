import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from effres_core.model import hub
from effres_core.model.net import EffResNet

from conftest import make_tiny_net


def test_round_trip_exact_weights(tmp_path):
    net = make_tiny_net(seed=3)
    folder = hub.save_pretrained(net, tmp_path / "m")
    assert (folder / hub.WEIGHTS_NAME).is_file()
    assert json.loads((folder / hub.CONFIG_NAME).read_text()) == net.config
    loaded = hub.load_pretrained(folder)
    assert hub.state_dict_equal(net, loaded)
    assert loaded.config == net.config and not loaded.training
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(net(x), loaded(x))


def test_lone_safetensors_file_uses_its_metadata(tmp_path):
    net = make_tiny_net(seed=4)
    folder = hub.save_pretrained(net, tmp_path / "m")
    lone = tmp_path / "alone" / "weights.safetensors"
    lone.parent.mkdir()
    (folder / hub.WEIGHTS_NAME).rename(lone)  # no config.json beside it any more
    loaded = hub.load_pretrained(lone)
    assert loaded.config == net.config and hub.state_dict_equal(net, loaded)


def test_extra_config_is_kept(tmp_path):
    folder = hub.save_pretrained(make_tiny_net(), tmp_path, extra_config={"trained_steps": 7})
    assert hub.load_pretrained(folder).config["trained_steps"] == 7


def test_strict_loading_rejects_wrong_keys(tmp_path):
    folder = hub.save_pretrained(make_tiny_net(), tmp_path / "m")
    state = load_file(str(folder / hub.WEIGHTS_NAME))
    state["head.extra"] = torch.zeros(1)
    del state["head.bias"]
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata={"effres_config": json.dumps(make_tiny_net().config)})
    with pytest.raises(RuntimeError, match="head.bias|head.extra"):
        hub.load_pretrained(bad)


def test_wrong_architecture_is_an_error(tmp_path):
    folder = hub.save_pretrained(make_tiny_net(width=0.25), tmp_path / "m")
    (folder / hub.CONFIG_NAME).write_text(json.dumps({"backbone": "mobilenet_v2", "patch_size": 32, "width": 0.5}))
    with pytest.raises(RuntimeError):
        hub.load_pretrained(folder)


def test_bad_ids(tmp_path):
    with pytest.raises(hub.WeightsNotFoundError, match="model.safetensors"):
        hub.load_pretrained(tmp_path)  # an empty folder
    with pytest.raises(hub.WeightsNotFoundError):
        hub.load_pretrained(str(tmp_path / "missing" / "x.safetensors"))
    (tmp_path / "w.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match="safetensors"):
        hub.load_pretrained(tmp_path / "w.bin")
    lone = tmp_path / "noconfig.safetensors"
    save_file({"x": torch.zeros(1)}, str(lone))
    with pytest.raises(ValueError, match="config"):
        hub.load_pretrained(lone)


def test_from_pretrained_mocked_hub_download(tmp_path, monkeypatch):
    import huggingface_hub

    net = make_tiny_net(seed=5)
    folder = hub.save_pretrained(net, tmp_path / "remote")
    calls = []

    def fake_download(repo_id, filename, revision=None, local_files_only=False, **kwargs):
        calls.append((repo_id, filename, revision, local_files_only))
        return str(folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = hub.load_pretrained("someone/effres-tiny", revision="v1")
    assert hub.state_dict_equal(net, loaded)
    assert calls[0] == ("someone/effres-tiny", hub.WEIGHTS_NAME, "v1", True)  # the local cache first

    from effres_core.measure.scorer import EffRes

    model = EffRes.from_pretrained("someone/effres-tiny", device="cpu", detector="whole", masker="none")
    assert hub.state_dict_equal(net, model.net)


def test_hub_offline_error_message(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(hub.WeightsNotFoundError, match="someone/missing.*no network"):
        hub.load_pretrained("someone/missing")


def test_no_default_model_says_so(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(hub, "BUNDLED_DEFAULT", tmp_path / "nothing")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(hub.WeightsNotFoundError, match="no default effres model"):
        hub.resolve_weights(None)


def test_bundled_default_is_preferred(tmp_path, monkeypatch):
    net = make_tiny_net(seed=6)
    monkeypatch.setattr(hub, "BUNDLED_DEFAULT", hub.save_pretrained(net, tmp_path / "default"))
    assert hub.resolve_weights(None) == tmp_path / "default" / hub.WEIGHTS_NAME
    assert hub.state_dict_equal(net, hub.load_pretrained())


def test_push_to_hub_uploads_weights_and_card(monkeypatch):
    import huggingface_hub

    uploaded = {}

    class FakeApi:
        def create_repo(self, repo_id, exist_ok, private):
            uploaded["repo"] = repo_id

        def upload_folder(self, repo_id, folder_path, commit_message):
            from pathlib import Path

            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            return "https://hub/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert hub.push_to_hub(make_tiny_net(), "me/tiny", model_card="# tiny") == "https://hub/commit/1"
    assert uploaded == {"repo": "me/tiny", "files": ["README.md", "config.json", "model.safetensors"]}


def test_effresnet_default_config_round_trip(tmp_path):
    net = EffResNet("mobilenet_v2", patch_size=64)
    loaded = hub.load_pretrained(hub.save_pretrained(net, tmp_path))
    assert loaded.config == {"backbone": "mobilenet_v2", "patch_size": 64, "width": 1.0}
    assert hub.state_dict_equal(net, loaded)
