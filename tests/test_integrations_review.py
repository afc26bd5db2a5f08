"""Review fixes in the training integrations: GPT-2 trained without a cache is traced by the monitor
itself (and Lightning's profile), its config put back exactly; EntropyTrainer's errors name
``entropy_prefix=`` and refuse ``entropy=None`` in a sentence; EntropyMonitorCallback refuses a bad
input and an existing CSV when it is made, and a resumed Trainer run continues the profile it wrote.
Tiny models built from configs (no download); the expected totals are ``analyze``'s."""

from __future__ import annotations

import copy
import csv
import re
from types import SimpleNamespace

import pytest
import torch

import entropyflow
from entropyflow.config import from_dict
from entropyflow.errors import ConfigError, OptionError, OutputError
from entropyflow.integrations.monitor import COLUMNS, EntropyMonitor, cache_on
from entropyflow.spec import parse_inputs

T = pytest.importorskip("transformers")
hf = pytest.importorskip("entropyflow.integrations.transformers")

H = 32
Q = "transformer.h.0.attn.c_attn.weight"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # conftest.one_thread, for every test here
    yield


def gpt2(use_cache: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = T.GPT2Config(n_embd=H, n_layer=2, n_head=2, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0,
                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=use_cache)  # fmt: skip
    return T.GPT2LMHeadModel(cfg)


def q_config(lam: float = 1e-3):
    layer = {"name": "transformer.h.0.attn.c_attn.q", "kind": "attention_q", "weight_key": Q, "weight_shape": [H, H],
             "lambda": lam, "rows": [0, H], "transposed": True}  # fmt: skip
    return from_dict({
        "schema_version": 1, "model": "tiny gpt2", "estimator": "paper", "channel_rule": "first",
        "loss": {"form": "log", "epsilon": 1e-4}, "strategy": {"name": "manual"}, "layers": [layer],
    })  # fmt: skip


def totals(layers) -> list[float | None]:
    return [layer.total for layer in layers]


# -- 1. the monitor turns the cache on while it traces, and puts the config back --------------------


def test_monitor_traces_gpt2_trained_without_cache_and_restores_its_config():
    model = gpt2(use_cache=False)
    before = copy.deepcopy(vars(model.config))
    profile = EntropyMonitor(model, input="long:1x16").record(0)
    reference = entropyflow.analyze(model, input=parse_inputs("long:1x16"))
    assert [layer.name for layer in profile.layers] == [layer.name for layer in reference.layers]
    assert all(t is not None for t in totals(profile.layers))
    assert totals(profile.layers) == totals(reference.layers)
    assert vars(model.config) == before
    assert model.config.use_cache is False


def test_cache_on_restores_an_attribute_the_config_did_not_hold():
    class Config:
        use_cache = False  # a class default, not the instance's own

    own = SimpleNamespace(use_cache=False, other=1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model.config = Config()
    model[1].config = own
    model[0].config = own  # the same object twice: changed once, restored once
    with cache_on(model):
        assert model.config.use_cache is True and own.use_cache is True
    assert "use_cache" not in vars(model.config) and model.config.use_cache is False
    assert vars(own) == {"use_cache": False, "other": 1}


def test_cache_on_restores_the_config_when_the_trace_fails():
    model = gpt2(use_cache=False)
    with pytest.raises(RuntimeError), cache_on(model):
        raise RuntimeError("trace failed")
    assert model.config.use_cache is False


def test_lightning_profile_traces_gpt2_trained_without_cache():
    pl = pytest.importorskip("lightning.pytorch")
    from entropyflow.integrations.lightning import EntropyGuidance

    class LM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = gpt2(use_cache=False)

        def training_step(self, batch, batch_idx):
            return self.net(input_ids=batch, labels=batch).loss

    module = LM()
    callback = EntropyGuidance(q_config(), profile_every=1, input="long:1x16")
    callback.setup(None, module, "fit")  # type: ignore[arg-type]
    try:
        profile = callback.monitor.record(0)
    finally:
        callback.teardown(None, module, "fit")  # type: ignore[arg-type]
    reference = entropyflow.analyze(module.net, input=parse_inputs("long:1x16"))
    assert [layer.name for layer in profile.layers] == ["net." + layer.name for layer in reference.layers]
    assert totals(profile.layers) == totals(reference.layers)
    assert module.net.config.use_cache is False


# -- 2. and 4. EntropyTrainer's own words ----------------------------------------------------------


def arguments(tmp_path, **kw) -> T.TrainingArguments:
    base = dict(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                seed=0, max_grad_norm=0.0, per_device_train_batch_size=2, logging_steps=1)  # fmt: skip
    return T.TrainingArguments(**{**base, **kw})


def lm_data(n: int) -> list[dict[str, torch.Tensor]]:
    x = torch.randint(0, 100, (n, 16), generator=torch.Generator().manual_seed(1))
    return [{"input_ids": row, "labels": row} for row in x]


def test_entropy_trainer_errors_name_entropy_prefix(tmp_path):
    with pytest.raises(ConfigError) as caught:
        hf.EntropyTrainer(model=gpt2(), args=arguments(tmp_path), entropy=q_config(), entropy_prefix="wrong.")
    message = str(caught.value)
    assert "pass entropy_prefix=" in message
    assert re.search(r"(?<!entropy_)prefix=", message) is None


@pytest.mark.parametrize("entropy", [None, 3])
def test_entropy_trainer_without_a_config_says_what_to_pass(tmp_path, entropy):
    with pytest.raises(OptionError, match=r"EntropyTrainer needs entropy=, a λ config .*LambdaConfig") as caught:
        hf.EntropyTrainer(model=gpt2(), args=arguments(tmp_path), entropy=entropy)
    assert "\n" not in str(caught.value)


# -- 3. the callback's example input, refused when it is made --------------------------------------


def test_callback_refuses_a_bad_input_when_made_as_lightning_does():
    with pytest.raises(OptionError, match="bad input 'foo'") as hf_error:
        hf.EntropyMonitorCallback(1, input="foo")
    pl = pytest.importorskip("entropyflow.integrations.lightning")
    with pytest.raises(OptionError) as pl_error:
        pl.EntropyGuidance(q_config(), input="foo")
    assert str(hf_error.value) == str(pl_error.value)
    with pytest.raises(OptionError, match="disagree"):
        hf.EntropyMonitorCallback(1, input="long:1x16", input_size=(3, 8))


# -- 5. the profile CSV: refused before any work, continued on resume -------------------------------


def test_callback_refuses_a_file_it_did_not_write_when_made(tmp_path):
    path = tmp_path / "profile.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(OutputError, match="exists .*pass overwrite=True"):
        hf.EntropyMonitorCallback(1, csv=path)
    hf.EntropyMonitorCallback(1, csv=path, overwrite=True)  # allowed, replaced when training starts
    assert path.read_text() == "a,b\n1,2\n"
    with pytest.raises(OutputError, match="no such folder"):
        hf.EntropyMonitorCallback(1, csv=tmp_path / "missing" / "profile.csv")


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def test_resumed_trainer_continues_the_profile_it_wrote(tmp_path):
    path = tmp_path / "profile.csv"
    args = arguments(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    first = hf.EntropyMonitorCallback(1, input="long:1x16", csv=path)
    T.Trainer(model=gpt2(), args=args, train_dataset=lm_data(8), callbacks=[first]).train()
    rows = read_rows(path)
    layers = len(first.history[0].layers)
    assert [int(r["step"]) for r in rows] == [s for s in range(5) for _ in range(layers)]

    # a fresh run on the same file: refused at on_train_begin, before any record; the file as it was
    again = hf.EntropyMonitorCallback(1, input="long:1x16", csv=path)
    fresh = T.Trainer(model=gpt2(), args=arguments(tmp_path, max_steps=1), train_dataset=lm_data(8), callbacks=[again])
    with pytest.raises(OutputError, match="exists: pass overwrite=True"):
        fresh.train()
    assert read_rows(path) == rows and again.history == []

    # resumed from step 2: rows up to step 2 kept (step 2 not recorded twice), steps 3 and 4 recorded again
    resumed = hf.EntropyMonitorCallback(1, input="long:1x16", csv=path)
    trainer = T.Trainer(model=gpt2(), args=args, train_dataset=lm_data(8), callbacks=[resumed])
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    after = read_rows(path)
    assert [int(r["step"]) for r in after] == [s for s in range(5) for _ in range(layers)]
    assert after[: 3 * layers] == rows[: 3 * layers]
    assert [p.step for p in resumed.history] == [3, 4]
    for new, old in zip(after[3 * layers :], rows[3 * layers :], strict=True):  # the same run, resumed
        assert new["name"] == old["name"]
        assert float(new["median"]) == pytest.approx(float(old["median"]), rel=1e-6, abs=1e-9)


def test_monitor_resume_refuses_a_file_it_did_not_write(tmp_path):
    path = tmp_path / "profile.csv"
    path.write_text("step,x\n0,1\n")
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(OutputError, match="exists .*pass overwrite=True"):
        EntropyMonitor(model, csv=path, resume=3)
    assert path.read_text() == "step,x\n0,1\n"
    EntropyMonitor(model, csv=path, overwrite=True, resume=3)
    assert path.read_text() == ",".join(COLUMNS) + "\n"
