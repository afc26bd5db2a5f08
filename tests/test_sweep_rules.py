"""Structural placements swept without a reference (issue 23): ``first``, ``first-k``, ``pre-skip``,
``dense-first`` and ``all`` resolved inside the trial on the model the training function builds,
and the layers chosen recorded with each trial."""

from __future__ import annotations

import csv
import importlib.util
import json
import random

import numpy as np
import pytest
import torch
from hostile import run
from test_sweep import TRAIN, collect
from torch import nn

import entropyflow.sweep as sweep
from entropyflow import analyze
from entropyflow.config import load_config
from entropyflow.errors import ConfigError, OptionError
from entropyflow.recommend import RecommendOptions, recommend
from entropyflow.regularize import EntropyRegularizer
from entropyflow.sweep import contract
from entropyflow.sweep.rules import resolve
from entropyflow.sweep.runner import placements
from entropyflow.sweep.spec import Cell, Rule, SweepSpec, placements_from


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


class HeadFirst(nn.Module):
    """Registers its head before its body: registration order is not the forward order."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8 * 4 * 4, 5)
        self.body = nn.Conv2d(1, 8, 3)
        self.second = nn.Conv2d(8, 8, 3)

    def forward(self, x):
        return self.head(self.second(torch.relu(self.body(x))).flatten(1))


class Branchy(HeadFirst):
    """The same layers, with data-dependent control flow torch.fx cannot trace."""

    def forward(self, x):
        y = self.second(torch.relu(self.body(x)))
        if float(y.sum()) > 1e9:
            y = -y
        return self.head(y.flatten(1))


def names(config) -> list[str]:
    return [layer.name for layer in config.layers]


# --- the grid -------------------------------------------------------------------------------------


def test_without_a_reference_structural_placements_become_rules():
    found = placements(["first", "dense-first", "first-k"], None, options=RecommendOptions(k=2))
    assert [(p.name, p.config, p.rule) for p in found] == [
        ("first", None, Rule("first", 2)),
        ("dense-first", None, Rule("dense-first", 2)),
        ("first-k", None, Rule("first-k", 2)),
    ]
    spec = SweepSpec(lambdas=(0.0, 1e-3), placements=found, seeds=(0,), epochs=2, metric="loss")
    trial = spec.cells[1].trial_config(7, 2, {})
    assert trial["entropy"] == {"rule": "first", "k": 2, "form": "log", "epsilon": 1e-4, "lambda": 1e-3}
    assert spec.to_dict()["placements"]["first"] == {"rule": "first", "k": 2, "form": "log", "epsilon": 1e-4}
    assert spec.cells[0].trial_config(7, 2, {})["entropy"] is None  # the baseline


@pytest.mark.parametrize("names_", [["empirical"], ["first", "largest-change"]])
def test_placements_that_read_trained_weights_still_need_a_reference(names_):
    with pytest.raises(OptionError) as err:
        placements(names_, None)
    text = str(err.value)
    assert "give reference= " in text and names_[-1] in text and "--" not in text  # a library call: its words
    assert "first, first-k, pre-skip, dense-first, all need no reference" in text
    from entropyflow import words

    with words.speaking("cli"), pytest.raises(OptionError) as err:
        placements(names_, None)
    assert f"--placements {names_[-1]} ranks" in str(err.value) and "give --reference" in str(err.value)


# --- resolving on the live model ------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule,expected",
    [
        (Rule("first"), ["0"]),
        (Rule("first-k", k=2), ["0", "2"]),
        (Rule("dense-first"), ["0"]),
        (Rule("all"), ["0", "2", "4"]),
    ],
)
def test_rules_on_an_mlp_take_its_dense_layers(rule, expected):
    config = resolve(mlp(), rule, 1e-3)
    assert names(config) == expected and {layer.lam for layer in config.layers} == {1e-3}
    if rule.strategy.startswith("first"):  # the paper's 'first layer' on a model without convs (issue 23)
        assert "The model has no conv layer, so " in config.strategy.rationale


def test_a_resolved_rule_is_what_recommend_gives_on_the_traced_analysis():
    model = cnn()
    for rule in (Rule("first"), Rule("first-k", k=2), Rule("dense-first"), Rule("all")):
        got = resolve(model, rule, 5e-3)
        traced = analyze(model, input_size=(1, 8, 8), hash_files=False)
        want = recommend(traced, RecommendOptions(rule.strategy, k=rule.k, lam_conv=5e-3, lam_dense=5e-3))
        assert got.layers == want.layers and got.fingerprint == want.fingerprint
        assert dict(got.strategy.params)["order"] == "fx"
        again = resolve(model, rule, 5e-3, input_size=(1, 8, 8))
        assert again.layers == want.layers and dict(again.strategy.params)["order"] == "traced"


def test_pre_skip_resolves_on_a_residual_model():
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18(num_classes=10)
    config = resolve(model, Rule("pre-skip"), 1e-3)
    analysis = analyze(model, input_size=(3, 32, 32), hash_files=False)
    want = recommend(analysis, RecommendOptions("pre-skip"), model=model)
    assert names(config) == [layer.name for layer in want.layers] and "layer1.0.conv2" in names(config)


def test_the_forward_order_not_the_registration_order():
    assert names(resolve(HeadFirst(), Rule("first"), 1e-3)) == ["body"]  # from the fx graph
    assert names(resolve(HeadFirst(), Rule("dense-first"), 1e-3)) == ["head"]
    traced = resolve(Branchy(), Rule("first"), 1e-3, input_size=(1, 8, 8))
    assert names(traced) == ["body"] and dict(traced.strategy.params)["order"] == "traced"
    # fx cannot trace Branchy and no input was given: registration order, and the config says so
    guessed = resolve(Branchy(), Rule("first-k", k=2), 1e-3)
    assert names(guessed) == ["body", "second"] and dict(guessed.strategy.params)["order"] == "registered"
    assert "pass input= to entropyflow.sweep.regularizer" in guessed.strategy.rationale


def test_resolving_draws_no_random_number():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    models = cnn(), Branchy()  # built first: their initialisation draws numbers
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    plain = draws()
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    resolve(models[0], Rule("all"), 1e-3)
    resolve(models[1], Rule("first"), 1e-3, input_size=(1, 8, 8))
    assert draws() == plain


def test_regularizer_resolves_the_rule_records_it_and_trains_like_the_explicit_config():
    spec = SweepSpec(lambdas=(1e-2,), placements=placements(["first"], None), seeds=(0,), epochs=1, metric="loss")
    trial = spec.cells[1].trial_config(0, 1, {})
    torch.manual_seed(0)
    model = cnn()
    reg = sweep.regularizer(model, trial)
    explicit = EntropyRegularizer.from_config(model, load_config(contract.placed[-1]["config"]))
    assert contract.placed[-1]["layers"] == ["0"]
    assert reg().item() == explicit().item()
    reg().backward()
    assert model[0].weight.grad is not None and model[2].weight.grad is None and model[4].weight.grad is None
    # a λ config (with a reference) records its layers and no config
    config = placements_from(analyze(cnn(), input_size=(1, 8, 8)), ["first-k"], RecommendOptions(k=2))[0].config
    sweep.regularizer(cnn(), Cell("c", 1e-2, "first-k", config).trial_config(0, 1, {}))
    assert contract.placed[-1] == {"layers": ["0", "2"], "config": None}


def test_a_rule_placement_trains_bit_for_bit_like_the_same_placement_from_a_reference(tmp_path):
    path = tmp_path / "mytrain.py"
    path.write_text(TRAIN)
    found = importlib.util.spec_from_file_location("mytrain_rules", path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    (tmp_path / "log").mkdir()
    params = {"log": str(tmp_path / "log")}
    torch.set_num_threads(1)
    ref = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    for name in ("first", "dense-first"):
        rule = Cell(f"{name} λ=0.01", 1e-2, name, None, Rule(name)).trial_config(1, 3, params)
        config = placements_from(analyze(ref, input_size=(1, 8, 8)), [name])[0].config
        from entropyflow.sweep.spec import with_lambda

        explicit = Cell(f"{name} λ=0.01", 1e-2, name, with_lambda(config, 1e-2)).trial_config(1, 3, params)
        assert collect(module.train, rule) == collect(module.train, explicit)
        assert contract.placed[-1]["layers"] == (["0"] if name == "first" else ["2"])


def test_prefix_candidates_are_named():
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student, self.teacher = cnn(), cnn()

    config = resolve(cnn(), Rule("first"), 1e-3)
    with pytest.raises(ConfigError) as err:
        EntropyRegularizer.from_config(Pair(), config)
    assert str(err.value) == (
        "the config's layers are all found in the model under 2 prefixes (an EMA copy, or a student and a "
        "teacher?): pass one of prefix='student.', prefix='teacher.'"
    )
    reg = EntropyRegularizer.from_config(Pair(), config, prefix="teacher.")
    assert reg.prefix == "teacher."


# --- a real sweep -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_of_a_user_function_without_a_reference_records_the_layers(tmp_path):
    (tmp_path / "mytrain.py").write_text(TRAIN)
    (tmp_path / "log").mkdir()
    out = tmp_path / "report"
    args = ["sweep", f"{tmp_path / 'mytrain.py'}:train", "--lambdas", "0,1e-2", "--placements", "first,dense-first"]
    args += ["--seeds", "2", "--epochs", "2", "--metric", "val_loss", "--cpus", "2", "-o", out]
    r = run(*args, "--param", f"log={tmp_path / 'log'}", timeout=300)
    assert r.rc == 0, r.err[-2000:]
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    layers = {(row["cell"], row["seed"]): row["layers"] for row in rows}
    assert layers == {
        ("baseline", "0"): "",
        ("baseline", "1"): "",
        ("first λ=0.01", "0"): "0",
        ("first λ=0.01", "1"): "0",
        ("dense-first λ=0.01", "0"): "2",
        ("dense-first λ=0.01", "1"): "2",
    }
    doc = json.loads((out / "summary.json").read_text())
    cells = {c["cell"]: c for c in doc["cells"]}
    assert cells["first λ=0.01"]["layers"] == ["0"] and cells["dense-first λ=0.01"]["layers"] == ["2"]
    assert cells["first λ=0.01"]["resolved"].startswith("in each trial")
    assert cells["baseline"]["layers"] is None
    assert doc["spec"]["placements"]["first"]["rule"] == "first"
    records = [json.loads(p.read_text()) for p in sorted((out / "tune" / "trials").glob("trial-*.json"))]
    placed = {(d["cell"], d["seed"]): d["placed"] for d in records}
    assert placed[("baseline", 0)] is None
    assert placed[("first λ=0.01", 1)]["layers"] == ["0"]
    assert load_config(placed[("first λ=0.01", 1)]["config"]).layers[0].lam == 1e-2
    # resuming reads the records back, placements included
    again = run(*args, "--param", f"log={tmp_path / 'log'}", "--resume", timeout=300)
    assert again.rc == 0, again.err[-2000:]
    assert json.loads((out / "summary.json").read_text())["cells"][1]["layers"] in (["0"], ["2"])
