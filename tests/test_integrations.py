"""Training integrations: EntropyMonitor on live models (values equal to analyze, weights seen as
they change, CSV and a real TensorBoard event file) and the Lightning callback with a real
Trainer on the CPU (the compound loss equals a hand-written loop's, prefixes, logging)."""

from __future__ import annotations

import copy
import csv
import math
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from entropyflow import analyze
from entropyflow.config import load_config, save_config
from entropyflow.errors import MissingExtraError, OptionError, OutputError
from entropyflow.integrations import EntropyMonitor
from entropyflow.recommend import RecommendOptions, recommend
from entropyflow.regularize import EntropyRegularizer
from entropyflow.warn import EntropyflowWarning


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)
    )


# --- EntropyMonitor --------------------------------------------------------------------------------


def profile_of(result):
    return {layer.name: (layer.summary.median, layer.summary.mean, layer.total) for layer in result.layers}


def test_monitor_records_what_analyze_reports_and_sees_every_update(tmp_path):
    model = small_cnn()
    monitor = EntropyMonitor(model, every=2, input_size=(1, 8, 8), csv=tmp_path / "p.csv")
    assert monitor.layers == ("0", "2", "5")
    first = monitor.step(0)
    assert first is not None
    assert {lay.name: (lay.median, lay.mean, lay.total) for lay in first.layers} == profile_of(
        analyze(model, input_size=(1, 8, 8))
    )
    assert monitor.step(1) is None  # every 2
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # every c11 doubles: log|c11| rises by log 2 for each filter
    second = monitor.step(2)
    assert second.layers[0].median == pytest.approx(first.layers[0].median + math.log(2), abs=1e-12)
    assert second.layers[1].median == first.layers[1].median
    model.double()  # the module's tensors are replaced: the monitor reads them, not stale references
    with torch.no_grad():
        model[2].weight.mul_(-3.0)
    third = monitor.record(3)
    assert third.layers[1].median == pytest.approx(first.layers[1].median + math.log(3), abs=1e-12)
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["step"] for r in rows] == ["0"] * 3 + ["2"] * 3 + ["3"] * 3
    assert float(rows[3]["median"]) == second.layers[0].median
    assert rows[2]["kind"] == "linear" and rows[2]["filters"] == "1"
    assert [p.step for p in monitor.history] == [0, 2, 3]


def test_monitor_without_input_size_gives_per_position_values_only():
    model = small_cnn()
    layers = EntropyMonitor(model).record(0).layers
    assert [lay.total for lay in layers] == [None, None, None]
    assert layers[0].median == analyze(model, input_size=(1, 8, 8)).layers[0].summary.median


def test_monitor_refuses_to_overwrite_and_survives_nan(tmp_path):
    model = small_cnn()
    (tmp_path / "p.csv").write_text("the user's file\n")
    with pytest.raises(OutputError, match="exists"):
        EntropyMonitor(model, csv=tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text() == "the user's file\n"
    with pytest.raises(OptionError, match="positive integer"):
        EntropyMonitor(model, every=0)
    monitor = EntropyMonitor(model, csv=tmp_path / "q.csv")
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.warns(EntropyflowWarning, match="NaN"):
        profile = monitor.record(5)
    assert profile.layers == () and "NaN" in (profile.error or "")


def test_monitor_logs_to_a_real_tensorboard_writer(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    model = small_cnn()
    writer = SummaryWriter(str(tmp_path / "tb"))
    with EntropyMonitor(model, input_size=(1, 8, 8), writer=writer) as monitor:
        a = monitor.record(0)
        with torch.no_grad():
            model[0].weight.mul_(0.5)
        b = monitor.record(1)
    writer.close()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    medians = events.Scalars("entropy/0/median")
    assert [e.step for e in medians] == [0, 1]
    assert [e.value for e in medians] == pytest.approx([a.layers[0].median, b.layers[0].median], rel=1e-6)
    assert events.Scalars("entropy/5/total")[0].value == pytest.approx(a.layers[2].total, rel=1e-6)
    assert "entropy/2" in events.Tags()["histograms"]


# --- Lightning ------------------------------------------------------------------------------------

lightning = pytest.importorskip("lightning.pytorch")


class Classifier(lightning.LightningModule):
    """A LightningModule that holds the network as ``self.model`` (the usual layout)."""

    def __init__(self, net: nn.Module, manual: bool = False):
        super().__init__()
        self.model = net
        self.automatic_optimization = not manual

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (48,), generator=g)
    return x, y


def loader():
    x, y = data()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=False)


def trainer(tmp_path, callback, epochs=2):
    return lightning.Trainer(
        accelerator="cpu", max_epochs=epochs, callbacks=[callback], default_root_dir=tmp_path,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        logger=lightning.loggers.CSVLogger(tmp_path), log_every_n_steps=1, deterministic=True,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path):
    """A λ config made from the *bare* network (keys '0.weight'), λ large enough to matter."""
    net = small_cnn(1)
    cfg = recommend(
        analyze(net, input_size=(1, 8, 8)), RecommendOptions(strategy="all", lam_conv=0.05, lam_dense=0.05), model=net
    )
    path = tmp_path / "lambda.yaml"
    save_config(cfg, path)
    return path


@pytest.mark.slow
def test_lightning_callback_trains_the_compound_loss(tmp_path, config):
    from entropyflow.integrations.lightning import EntropyGuidance

    net = small_cnn(2)
    hand = copy.deepcopy(net)
    module = Classifier(net)
    guidance = EntropyGuidance(config, profile_every=1, input_size=(1, 8, 8), profile_csv=tmp_path / "profile.csv")
    trainer(tmp_path, guidance).fit(module, loader())
    assert guidance.regularizer is not None and guidance.regularizer.prefix == "model."
    assert "training_step" not in module.__dict__  # the wrapper is gone after fit

    # the same two epochs by hand: cross-entropy + reg() on the same batches, plain SGD
    reg = EntropyRegularizer.from_config(hand, load_config(config))
    opt = torch.optim.SGD(hand.parameters(), lr=0.05)
    for _ in range(2):
        for x, y in loader():
            opt.zero_grad()
            (F.cross_entropy(hand(x), y) + reg()).backward()
            opt.step()
    for (name, a), b in zip(net.state_dict().items(), hand.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    # and without the term the weights would differ: the term was really in the loss
    plain = copy.deepcopy(small_cnn(2))
    opt = torch.optim.SGD(plain.parameters(), lr=0.05)
    for _ in range(2):
        for x, y in loader():
            opt.zero_grad()
            F.cross_entropy(plain(x), y).backward()
            opt.step()
    assert not torch.allclose(plain[0].weight, net[0].weight, atol=1e-4)

    logged = trainer_metrics(tmp_path)
    assert {"entropy/term_step", "entropy/term_epoch", "entropy/term/0_step", "entropy/term/2_step"} <= logged
    assert "entropy/term/5_step" not in logged  # "all" places the term on every conv, not the dense layer
    assert {"entropy/profile/model.0/median", "entropy/profile/model.5/total"} <= logged
    rows = list(csv.DictReader((tmp_path / "profile.csv").open()))
    assert sorted({r["step"] for r in rows}) == ["0", "1", "2"]  # the initialisation and each epoch
    final = analyze(net, input_size=(1, 8, 8))
    last = {r["name"]: float(r["median"]) for r in rows if r["step"] == "2"}
    assert last["model.0"] == final.layers[0].summary.median


def trainer_metrics(folder) -> set[str]:
    files = list(folder.rglob("metrics.csv"))
    assert len(files) == 1
    return set(next(csv.reader(files[0].open())))


def test_lightning_callback_refuses_manual_optimisation(tmp_path, config):
    from entropyflow.integrations.lightning import EntropyGuidance

    with pytest.raises(OptionError, match="manual_backward"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(tmp_path, EntropyGuidance(config)).fit(Classifier(small_cnn(), manual=True), loader())


def test_without_lightning_the_import_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.delitem(sys.modules, "entropyflow.integrations.lightning", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'entropyflow\[lightning\]'"):
        import entropyflow.integrations.lightning  # noqa: F401
