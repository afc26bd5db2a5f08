"""What a reviewer trying issue 23's paths as a new user ran into: a state dict passed where a model
goes, a sweep's placement rule given to ``EntropyRegularizer.from_config``, and a rule cell whose
training function never builds the term (it would have been reported as a result)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

import entropyflow
import entropyflow.sweep as sweep
from entropyflow.errors import ConfigError, OptionError
from entropyflow.regularize import EntropyRegularizer
from entropyflow.samples import samples_dir


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_a_state_dict_is_not_a_model_and_is_never_printed():
    sd = cnn().state_dict()
    with pytest.raises(OptionError) as info:
        entropyflow.analyze(sd)
    text = str(info.value)
    assert text.startswith("a mapping (OrderedDict of 6 entries: a state dict?) is not a model: ")
    assert "load_state_dict" in text and "arch=" in text and "tensor(" not in text and len(text) < 300
    for bad, name in ((42, "int"), (b"x.pt", "bytes")):
        with pytest.raises(OptionError, match=f"an os.PathLike or an nn.Module, not {name}$"):
            entropyflow.analyze(bad)


def test_a_path_object_is_a_model_spec():
    path = Path(samples_dir()) / "digits_vgg.pt" if (Path(samples_dir()) / "digits_vgg.pt").exists() else None
    if path is None:
        pytest.skip("the bundled sample lies elsewhere")
    by_path, by_text = entropyflow.analyze(path), entropyflow.analyze(str(path))
    assert by_path.model.spec == by_text.model.spec == str(path)
    assert len(by_path.layers) == len(by_text.layers) == 6
    for a, b in zip(by_path.layers, by_text.layers, strict=True):
        assert a.name == b.name and (a.per_position == b.per_position).all()


def test_a_placement_rule_given_to_from_config_says_where_it_belongs():
    with pytest.raises(ConfigError) as info:
        EntropyRegularizer.from_config(cnn(), {"rule": "first", "lambda": 0.1})
    assert str(info.value) == (
        "this is a sweep's placement rule (first, resolved on the live model), not a λ config: build the term with "
        "entropyflow.sweep.regularizer(model, config), given the trial's whole config, in the training function, "
        "which resolves the rule and records the layers it chose"
    )


def _trial(train, monkeypatch, entropy):
    """One trial through the function Ray runs, with Tune's report captured."""
    from entropyflow.sweep import ray_tune

    reports: list[dict] = []
    monkeypatch.setattr(ray_tune.tune, "report", reports.append)
    monkeypatch.setattr(ray_tune, "train_function", lambda name, cwd: train)
    ray_tune._trainable(
        {"_train": "mytrain:train", "trial": {"epochs": 2, "seed": 0, "params": {}, "entropy": entropy}}
    )
    return reports[-1], ray_tune


def test_a_rule_cell_whose_function_never_builds_the_term_fails(monkeypatch):
    def forgets(config, report):
        cnn()
        for epoch in (1, 2):
            report(epoch=epoch, val_loss=1.0 / epoch)

    last, ray_tune = _trial(forgets, monkeypatch, {"rule": "first", "lambda": 0.1})
    assert last[ray_tune.FAILED] == (
        "rejected: the training function never called entropyflow.sweep.regularizer(model, config), which builds "
        "this cell's entropy term (placement first, resolved on the model): it trained without the term, so its "
        "result would be the baseline's"
    )
    assert ray_tune.DONE not in last

    def builds(config, report):
        reg = sweep.regularizer(cnn(), config)
        assert reg is not None and float(sweep.entropy_term(reg).detach()) != 0.0
        for epoch in (1, 2):
            report(epoch=epoch, val_loss=1.0 / epoch)

    last, ray_tune = _trial(builds, monkeypatch, {"rule": "first", "lambda": 0.1})
    assert last.get(ray_tune.DONE) is True and ray_tune.FAILED not in last

    def baseline(config, report):  # the baseline builds nothing, and that is right
        for epoch in (1, 2):
            report(epoch=epoch, val_loss=1.0 / epoch)

    last, ray_tune = _trial(baseline, monkeypatch, None)
    assert last.get(ray_tune.DONE) is True and ray_tune.FAILED not in last


def test_an_ema_copy_takes_the_config_without_a_fingerprint_warning():
    import warnings

    from torch.optim.swa_utils import AveragedModel

    from entropyflow.recommend import RecommendOptions, recommend

    net = cnn()
    cfg = recommend(entropyflow.analyze(net, input_size=(1, 8, 8)), RecommendOptions())
    ema = AveragedModel(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the documented strict mode: a fingerprint warning would raise
        on_ema = EntropyRegularizer.from_config(ema, cfg)
    on_net = EntropyRegularizer.from_config(net, cfg)
    assert float(on_ema().detach()) == float(on_net().detach())
    on_ema().backward()  # the term reaches the EMA's own parameters, not the live model's
    assert ema.module[0].weight.grad is not None and net[0].weight.grad is None


class _Branchy(nn.Module):
    """A skip connection behind data-dependent control flow: torch.fx cannot read its graph."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.h = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        y = self.a(x)
        if float(y.sum()) > 1e9:
            y = -y
        return self.h((y + self.b(y)).flatten(1))


def test_pre_skip_without_a_graph_names_only_placements_that_need_no_reference():
    from entropyflow.recommend.skips import GraphError

    with pytest.raises(GraphError) as info:
        sweep.regularizer(_Branchy(), {"entropy": {"rule": "pre-skip", "lambda": 0.1}})
    text = str(info.value)
    assert text.startswith("placement pre-skip cannot be resolved on the model the training function built (")
    assert text.endswith("without a reference, sweep first, first-k, dense-first or all instead")
    assert "empirical" not in text and "largest-change" not in text and "strategy" not in text


def test_regularizer_trace_errors_name_its_own_arguments():
    from entropyflow.errors import TraceError

    config = {"entropy": {"rule": "first", "lambda": 0.1}}
    with pytest.raises(TraceError) as info:
        sweep.regularizer(cnn(), config, input_size=(3, 8, 8))
    assert str(info.value).startswith(
        "cannot trace the model the training function built with input_size=(3, 8, 8) (RuntimeError: "
    )
    assert "trace=False" not in str(info.value) and "regularizer(model, config, ...)" in str(info.value)
    with pytest.raises(TraceError, match=r"built with input=\['long:1x8'\] \(RuntimeError: "):
        sweep.regularizer(cnn(), config, input="long:1x8")


def test_a_module_without_forward_is_told_to_analyse_the_part_that_holds_its_layers():
    from entropyflow.errors import TraceError

    class NoForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = cnn()

    with pytest.raises(TraceError) as info:
        entropyflow.analyze(NoForward(), input_size=(1, 8, 8))
    assert str(info.value) == (
        'the model defines no forward() (Module [NoForward] is missing the required "forward" function), so there '
        "is nothing to trace: analyse the module that holds its layers (often an attribute such as .model or .net), "
        "or pass trace=False to analyse without geometry"
    )


def test_a_rule_resolved_in_registration_order_is_noted():
    from types import SimpleNamespace

    from entropyflow.sweep import contract
    from entropyflow.sweep.runner import registration_order_notes

    sweep.regularizer(_Branchy(), {"entropy": {"rule": "first", "lambda": 0.1}})  # fx cannot trace it, no input
    placed = contract.placed[-1]
    assert placed["layers"] == ["a"] and dict(placed["config"]["strategy"]["params"])["order"] == "registered"
    traced = sweep.regularizer(_Branchy(), {"entropy": {"rule": "first", "lambda": 0.1}}, input_size=(1, 8, 8))
    assert traced is not None and dict(contract.placed[-1]["config"]["strategy"]["params"])["order"] == "traced"
    outcomes = [
        SimpleNamespace(cell="baseline", placed=None),
        SimpleNamespace(cell="first λ=0.1", placed=placed),
        SimpleNamespace(cell="first λ=0.1", placed=placed),
        SimpleNamespace(cell="first λ=1", placed=contract.placed[-1]),
        SimpleNamespace(cell="explicit", placed={"layers": ["a"], "config": None}),
    ]
    assert registration_order_notes(outcomes) == (
        "first λ=0.1: its layers were taken in the order the modules were registered (torch.fx cannot trace the "
        "model and entropyflow.sweep.regularizer was given no input): give it input_size= or input= for the "
        "forward order",
    )


def _empty_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def test_uncached_timm_weights_name_the_download_command(monkeypatch, tmp_path):
    pytest.importorskip("timm")
    from entropyflow.errors import WeightsNotCachedError
    from entropyflow.load.hf_cache import download_command

    _empty_caches(monkeypatch, tmp_path)
    with pytest.raises(WeightsNotCachedError) as info:
        entropyflow.analyze("timm:resnet18")
    text = str(info.value)
    assert f"({download_command()} timm/resnet18." in text and "HF_HUB_OFFLINE" not in text
    assert text.endswith("pass weights=PATH, or use random_init=True")


def test_an_uncached_sweep_reference_gets_advice_the_sweep_can_follow(monkeypatch, tmp_path):
    from entropyflow.errors import WeightsNotCachedError
    from entropyflow.sweep.runner import placements

    _empty_caches(monkeypatch, tmp_path)
    with pytest.raises(WeightsNotCachedError) as info:
        placements(["empirical"], "torchvision:resnet18")
    text = str(info.value)
    assert text.startswith(
        "pretrained weights for torchvision:resnet18 (ResNet18_Weights.IMAGENET1K_V1) are not cached"
    )
    assert text.endswith(
        "copy the file there, or give reference the analysis.json of an analysis made where they are cached"
    )
    assert "random" not in text and "weights=" not in text
