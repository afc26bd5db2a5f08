"""The offline guard replaces two library hooks while builders run. These tests fail loudly if
torch or torchvision stop routing downloads and pretrained weights through them."""

import inspect

import pytest
import torch
import torchvision
from torchvision.models import _api

from entropyflow.errors import WeightsNotCachedError
from entropyflow.load import offline


def test_the_hooks_are_where_the_guard_expects_them():
    assert callable(torch.hub.download_url_to_file)
    assert "download_url_to_file(" in inspect.getsource(torch.hub.load_state_dict_from_url)
    assert callable(_api.WeightsEnum.get_state_dict)
    # torchvision's builders load pretrained weights through WeightsEnum.get_state_dict
    assert "weights.get_state_dict(" in inspect.getsource(torchvision.models.resnet._resnet)


@pytest.mark.slow
def test_no_downloads_refuses_and_restores(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    original = torch.hub.download_url_to_file
    with (
        offline.no_downloads("torchvision:resnet18", "CACHE"),
        pytest.raises(
            WeightsNotCachedError, match="building torchvision:resnet18 would download https://.*put the file in CACHE"
        ),
    ):
        torchvision.models.resnet18(weights="DEFAULT")
    assert torch.hub.download_url_to_file is original and not list(tmp_path.rglob("*.pth"))


@pytest.mark.slow
def test_torchvision_weights_hands_out_the_given_state_dict():
    sd = torchvision.models.resnet18().state_dict()
    marker = sd["conv1.weight"].clone().fill_(0.25)
    sd["conv1.weight"] = marker
    original = _api.WeightsEnum.get_state_dict
    with offline.torchvision_weights(sd):
        model = torchvision.models.resnet18(weights="DEFAULT")
    assert torch.equal(model.conv1.weight, marker) and _api.WeightsEnum.get_state_dict is original


def test_a_missing_hook_is_named():
    class Library:
        pass

    with (
        pytest.raises(offline.HookMissing, match="download_url_to_file is gone"),
        offline._replaced(Library, "download_url_to_file", print),
    ):
        pass
