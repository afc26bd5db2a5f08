"""The training integrations' example inputs: ``EntropyMonitor(input=...)`` with token ids on tiny
BERT and GPT-2 models (totals equal to ``analyze``'s), the ``input_size``/``input`` rule and bad
specs in library words, and modules without ``forward()`` (a LightningModule whose
``training_step`` calls ``self.net(x)``): traced through the attribute that holds the layers, under
the module's own names, with ``trace_module=`` when several attributes hold layers."""

from __future__ import annotations

import csv
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from entropyflow import analyze
from entropyflow.config import save_config
from entropyflow.errors import OptionError, TraceError
from entropyflow.integrations import EntropyMonitor
from entropyflow.recommend import RecommendOptions, recommend
from entropyflow.spec import ExampleInput, parse_inputs

transformers = pytest.importorskip("transformers")


def tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64,
    )  # fmt: skip
    return transformers.BertModel(config).eval()


def tiny_gpt2() -> nn.Module:
    torch.manual_seed(1)
    config = transformers.GPT2Config(
        vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2Model(config).eval()


def totals(layers) -> dict[str, float | None]:
    return {layer.name: layer.total for layer in layers}


# --- token inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2], ids=["bert", "gpt2"])
def test_monitor_with_token_ids_has_the_totals_analyze_reports(build):
    model = build()
    profile = EntropyMonitor(model, input="long:1x16").record(0)
    reference = analyze(model, input=parse_inputs("long:1x16"))
    assert [layer.name for layer in profile.layers] == [layer.name for layer in reference.layers]
    assert all(layer.total is not None and math.isfinite(layer.total) for layer in profile.layers)
    assert totals(profile.layers) == totals(reference.layers)
    if isinstance(model, transformers.GPT2Model):  # the fused c_attn is split into q, k, v
        assert profile.layers[0].name == "h.0.attn.c_attn.q"
    # without an example input the same layers have no totals (what a float input_size cannot give a BERT)
    assert all(layer.total is None for layer in EntropyMonitor(model).record(0).layers)


def test_monitor_takes_parsed_inputs_and_one_entry_per_argument():
    model = tiny_bert()
    parsed = EntropyMonitor(model, input=parse_inputs("long:1x8")).record(0)
    assert totals(parsed.layers) == totals(EntropyMonitor(model, input=["long:1x8"]).record(0).layers)
    # agreeing input_size and input are accepted; the shape is the token count
    agreeing = EntropyMonitor(model, input_size=(8,), input=ExampleInput("int64", (8,))).record(0)
    assert totals(agreeing.layers) == totals(parsed.layers)


class TwoArguments(nn.Module):
    """forward(x, n): the second argument sets how many times the layer runs (one input per argument)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x, n: int):
        for _ in range(n):
            x = self.a(x)
        return self.b(x)


def test_monitor_passes_one_input_per_forward_argument():
    model = TwoArguments()
    profile = EntropyMonitor(model, input=("float:1x6", "int:2")).record(0)
    reference = analyze(model, input=parse_inputs(["float:1x6", "int:2"]))
    assert totals(profile.layers) == totals(reference.layers)
    assert all(layer.total is not None for layer in profile.layers)
    with pytest.raises(OptionError, match=r"forward\(x, n\)"):  # the missing argument named
        EntropyMonitor(model, input_size=(6,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": (3, 8, 8), "input": "long:1x16"}, r"input_size 3x8x8 and input int64:1x16 .*disagree"),
        ({"input": "long"}, r"^bad input 'long': expected 'DTYPE:SHAPE'"),
        ({"input": "cplx:1x4"}, r"^bad input 'cplx:1x4'.*dtypes: .*long"),
        ({"input": "long:2x16"}, r"batch dimension, which is 1"),
        ({"input": ("int:4",)}, r"the first input \(int32:4\) is the model's main input"),
        ({"input": 16}, r"input must be a string such as 'long:1x128'"),
        ({"input": [("long", 16)]}, r"input entries are strings .* not tuple"),
        ({"input_size": "3xq"}, r"^bad input_size '3xq'"),
        ({"input_size": 3.5}, r"input_size must be a tuple of sizes"),
        ({"trace_module": "decoder"}, r"trace_module='decoder': BertModel has no such submodule"),
    ],
)
def test_bad_inputs_are_refused_in_library_words(kwargs, message):
    with pytest.raises(OptionError, match=message) as info:
        EntropyMonitor(tiny_bert(), **kwargs)
    text = str(info.value)
    assert "\n" not in text and "--" not in text  # one line, no CLI flag


def test_an_input_the_model_cannot_take_is_a_trace_error_in_library_words():
    with pytest.raises(TraceError, match=r"^the example input 1x3x8x8 does not run through BertModel .*input=") as info:
        EntropyMonitor(tiny_bert(), input_size=(3, 8, 8))  # float images into an embedding
    assert "--" not in str(info.value) and "trace=" not in str(info.value)  # the monitor has no trace=


# --- modules without forward() ---------------------------------------------------------------------


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)
    )


class Pair(nn.Module):
    """No forward(): a generator and a discriminator, both with layers."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.gen = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5))
        self.disc = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 1))
        self.register_buffer("steps", torch.zeros(()))


def test_a_module_without_forward_is_traced_through_the_attribute_holding_its_layers():
    class Holder(nn.Module):  # the layers in one attribute, a parameter-free metric beside it
        def __init__(self):
            super().__init__()
            self.net = small_cnn()
            self.loss_fn = nn.CrossEntropyLoss()

    holder = Holder()
    profile = EntropyMonitor(holder, input_size=(1, 8, 8)).record(0)
    bare = analyze(holder.net, input_size=(1, 8, 8))
    assert [layer.name for layer in profile.layers] == ["net.0", "net.2", "net.5"]  # the holder's names
    assert totals(profile.layers) == {f"net.{layer.name}": layer.total for layer in bare.layers}


def test_several_attributes_with_layers_ask_for_trace_module_which_resolves_it():
    with pytest.raises(OptionError, match=r"layers are in 2 attributes \(gen, disc\): pass trace_module=") as info:
        EntropyMonitor(Pair(), input_size=(4,))
    assert "--" not in str(info.value)
    pair = Pair()
    profile = EntropyMonitor(pair, input_size=(4,), trace_module="gen").record(0)
    by_name = profile.by_name()
    assert [layer.name for layer in profile.layers] == ["gen.0", "gen.2", "disc.0", "disc.2"]
    gen = analyze(pair.gen, input_size=(4,))
    assert [by_name[f"gen.{layer.name}"].total for layer in gen.layers] == [layer.total for layer in gen.layers]
    assert by_name["disc.0"].total is None and by_name["disc.2"].total is None  # not on the traced path
    # a nested path works too, and without an example input nothing is traced (no question to ask)
    nested = EntropyMonitor(pair, input_size=(4,), trace_module="gen.0").record(0).by_name()
    assert nested["gen.0"].total == by_name["gen.0"].total and nested["gen.2"].total is None
    assert all(layer.total is None for layer in EntropyMonitor(Pair()).record(0).layers)


# --- Lightning ------------------------------------------------------------------------------------

lightning = pytest.importorskip("lightning.pytorch")


class NoForward(lightning.LightningModule):
    """The common layout without forward(): training_step calls the network attribute itself."""

    def __init__(self, net: nn.Module, other: nn.Module | None = None):
        super().__init__()
        self.net = net
        if other is not None:
            self.head = other  # a second attribute with layers (unused by training_step)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def fit(tmp_path, callback, module, epochs=2):
    trainer = lightning.Trainer(
        accelerator="cpu", max_epochs=epochs, callbacks=[callback], default_root_dir=tmp_path,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        logger=lightning.loggers.CSVLogger(tmp_path), log_every_n_steps=1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and small logging intervals
        trainer.fit(module, loader())


@pytest.fixture
def config(tmp_path):
    """A λ config made from the bare network (layers '0' and '2'); the regularizer finds 'net.'."""
    net = small_cnn(1)
    cfg = recommend(analyze(net, input_size=(1, 8, 8)), RecommendOptions(strategy="all", lam_conv=0.01), model=net)
    path = tmp_path / "lambda.yaml"
    save_config(cfg, path)
    return path, cfg


def test_lightning_module_without_forward_gets_a_profile_with_totals(tmp_path, config):
    from entropyflow.integrations.lightning import EntropyGuidance

    path, cfg = config
    module = NoForward(small_cnn(2))
    guidance = EntropyGuidance(path, profile_every=1, input_size=(1, 8, 8), profile_csv=tmp_path / "profile.csv")
    fit(tmp_path, guidance, module)
    assert guidance.regularizer is not None and guidance.regularizer.prefix == "net."
    assert guidance.monitor is not None and [p.step for p in guidance.monitor.history] == [0, 1, 2]
    rows = list(csv.DictReader((tmp_path / "profile.csv").open()))
    assert sorted({r["step"] for r in rows}) == ["0", "1", "2"]
    names = [r["name"] for r in rows if r["step"] == "2"]
    assert names == ["net.0", "net.2", "net.5"]  # the LightningModule's names, as the regularizer's
    assert {guidance.regularizer.prefix + layer.name for layer in cfg.layers} == {"net.0", "net.2"}
    last = {r["name"]: float(r["total"]) for r in rows if r["step"] == "2"}
    final = analyze(module.net, input_size=(1, 8, 8))
    assert last == pytest.approx({f"net.{layer.name}": layer.total for layer in final.layers}, rel=1e-12)
    logged = set(next(csv.reader(next(tmp_path.rglob("metrics.csv")).open())))
    assert {"entropy/profile/net.0/total", "entropy/profile/net.5/total", "entropy/profile/net.5/median"} <= logged


def test_lightning_ambiguous_module_names_the_candidates_and_trace_module_resolves_it(tmp_path, config):
    from entropyflow.integrations.lightning import EntropyGuidance

    path, _ = config
    head = nn.Sequential(nn.Linear(10, 4))
    with pytest.raises(OptionError, match=r"NoForward .*\(net, head\): pass trace_module= .*'net'"):
        fit(tmp_path / "a", EntropyGuidance(path, profile_every=1, input_size=(1, 8, 8)), NoForward(small_cnn(2), head))
    guidance = EntropyGuidance(path, profile_every=1, input_size=(1, 8, 8), trace_module="net")
    module = NoForward(small_cnn(2), head)
    fit(tmp_path / "b", guidance, module, epochs=1)
    assert guidance.monitor is not None
    last = guidance.monitor.history[-1].by_name()
    assert list(last) == ["net.0", "net.2", "net.5", "head.0"]
    assert last["net.5"].total == analyze(module.net, input_size=(1, 8, 8)).layers[2].total
    assert last["head.0"].total is None  # not on the path the example runs


class TokenModule(lightning.LightningModule):
    """A BERT without forward() in the LightningModule: training_step calls self.encoder(ids)."""

    def __init__(self):
        super().__init__()
        self.encoder = tiny_bert().train()

    def training_step(self, batch, batch_idx):
        (ids,) = batch
        return self.encoder(input_ids=ids).last_hidden_state.pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_guidance_profiles_a_token_model_and_refuses_bad_inputs_when_made(tmp_path):
    from entropyflow.integrations.lightning import EntropyGuidance

    bert = tiny_bert()
    cfg = recommend(analyze(bert, input=parse_inputs("long:1x16")), RecommendOptions(strategy="all"), model=bert)
    with pytest.raises(OptionError, match=r"input_size 1x8x8 and input int64:1x16 .*disagree"):
        EntropyGuidance(cfg, input_size=(1, 8, 8), input="long:1x16")
    with pytest.raises(OptionError, match=r"^bad input 'long:1x'"):
        EntropyGuidance(cfg, input="long:1x")

    module = TokenModule()
    guidance = EntropyGuidance(cfg, profile_every=1, input="long:1x16")
    ids = torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(2))
    trainer = lightning.Trainer(
        accelerator="cpu", max_epochs=1, callbacks=[guidance], default_root_dir=tmp_path, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids), batch_size=2))
    assert guidance.regularizer is not None and guidance.regularizer.prefix == "encoder."
    assert guidance.monitor is not None and [p.step for p in guidance.monitor.history] == [0, 1]
    last = guidance.monitor.history[-1]
    after = analyze(module.encoder, input=parse_inputs("long:1x16"))
    assert totals(last.layers) == {f"encoder.{layer.name}": layer.total for layer in after.layers}
    assert all(layer.total is not None for layer in last.layers)
