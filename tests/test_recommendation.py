"""recommend: strategies, the λ config (YAML/JSON, validation), and the loop analyse → recommend →
config → EntropyRegularizer, whose terms must equal the analysis' own numbers."""

import json

import numpy as np
import pytest
import torch
import torchvision
import yaml
from test_cli import assert_user_error
from torch import nn

import entropyflow
from entropyflow.errors import ConfigError, OptionError
from entropyflow.recommend import RecommendOptions, load_config, recommend, save_config
from entropyflow.recommend.skips import GraphError, skip_graph
from entropyflow.regularize import EntropyflowWarning, EntropyRegularizer
from entropyflow.samples import build_sample, samples_dir

SAMPLES = ["digits_vgg", "digits_resnet", "digits_autoencoder", "digits_unet"]


def trained(name):
    model = build_sample(name)
    model.load_state_dict(torch.load(samples_dir() / f"{name}.pt", weights_only=True)["state_dict"])
    return model


@pytest.fixture(scope="module")
def analyses():
    return {n: entropyflow.analyze(str(samples_dir() / f"{n}.pt")) for n in SAMPLES}


def assert_terms_equal_analysis(reg, analysis, cfg):
    """The regularizer's log-form terms are -λ Σ log|c11| (conv) and -λ log|det| (dense): the analysis' numbers."""
    parts = reg.breakdown()
    assert list(parts) == [layer.name for layer in cfg.layers]
    for layer in cfg.layers:
        a = analysis.layer(layer.name)
        expected = -layer.lam * (a.per_position.sum() if a.is_conv else a.logdet)
        assert parts[layer.name] == pytest.approx(expected, rel=1e-6), layer.name


@pytest.mark.parametrize(
    "name,strategy,layers",
    [
        ("digits_vgg", "first", ["features.0"]),
        ("digits_resnet", "empirical", None),
        ("digits_autoencoder", "dense-first", ["encoder"]),
        ("digits_unet", "largest-change", None),
    ],
)
def test_round_trip_on_every_sample(analyses, tmp_path, name, strategy, layers):
    a = analyses[name]
    cfg = recommend(a)
    assert cfg.strategy.name == strategy and dict(cfg.strategy.params)["requested"] == "auto"
    assert cfg.strategy.rationale.startswith("auto: ") and "paper" in cfg.strategy.rationale
    if layers:
        assert [layer.name for layer in cfg.layers] == layers
    path = save_config(cfg, tmp_path / "lambda.yaml")
    loaded = load_config(path)
    assert loaded.layers == cfg.layers and loaded.fingerprint == cfg.fingerprint and loaded.form == "log"
    with warnings_as_errors():
        reg = EntropyRegularizer.from_config(trained(name), path)  # fingerprint matches: no warning
    assert_terms_equal_analysis(reg, a, loaded)


class warnings_as_errors:
    def __enter__(self):
        import warnings

        self.ctx = warnings.catch_warnings()
        self.ctx.__enter__()
        warnings.simplefilter("error", EntropyflowWarning)

    def __exit__(self, *exc):
        self.ctx.__exit__(*exc)


@pytest.mark.slow
def test_round_trip_on_torchvision_resnet50_random_init(tmp_path):
    a = entropyflow.analyze("torchvision:resnet50", random_init=True, seed=0)
    cfg = recommend(a)
    assert cfg.strategy.name == "empirical" and "16 residual additions" in cfg.strategy.rationale
    assert any("random initialisation" in w for w in cfg.warnings)
    path = save_config(cfg, tmp_path / "lambda.json")
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    reg = EntropyRegularizer.from_config(model, path)
    assert_terms_equal_analysis(reg, a, load_config(path))
    reg().backward()
    assert model.get_parameter(cfg.layers[0].weight_key).grad is not None


@pytest.mark.slow
def test_pre_skip_on_resnet50_is_conv3_and_downsample():
    model = torchvision.models.resnet50()
    g = skip_graph(model)
    expected = {
        f"{s}.{i}.conv3" for s, n in (("layer1", 3), ("layer2", 4), ("layer3", 6), ("layer4", 3)) for i in range(n)
    }
    expected |= {f"layer{s}.0.downsample.0" for s in range(1, 5)}
    assert g.n_adds == 16 and len(expected) == 20 and set(g.add_feeders) == expected and g.cat_feeders == ()


def test_pre_skip_pass_through_rules():
    from torchvision.ops import StochasticDepth

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.d, self.e = (nn.Conv2d(4, 4, 3, padding=1) for _ in range(5))
            self.bn, self.sd, self.pool = nn.BatchNorm2d(4), StochasticDepth(0.1, "row"), nn.AvgPool2d(3, 1, 1)
            self.gamma = nn.Parameter(torch.ones(4, 1, 1))

        def forward(self, x):
            x = x + self.sd(self.bn(self.a(x)))  # a: through norm and stochastic depth
            x = x + self.gamma * self.b(x)  # b: through a layer-scale parameter
            x = x + self.c(x) / 2.0  # c: through division by a constant
            x = x + self.d(x) * torch.sigmoid(self.e(x))  # d, e: a gated product is not a scaling
            return torch.cat([self.pool(self.a(x)), x], 1)  # pooling is not pass-through

    g = skip_graph(Block())
    assert (g.n_adds, g.n_cats) == (4, 1) and set(g.add_feeders) == {"a", "b", "c"} and g.cat_feeders == ()


@pytest.mark.slow
def test_pre_skip_agrees_between_torchvision_and_timm_efficientnet():
    from entropyflow.load import zoo
    from entropyflow.spec import parse_spec

    tv = skip_graph(zoo.build(parse_spec("torchvision:efficientnet_b0")))
    tm = skip_graph(zoo.build(parse_spec("timm:efficientnet_b0")))
    # 9 residual additions; each takes its block's projection conv and the previous block's one
    assert tv.n_adds == tm.n_adds == 9 and len(tv.add_feeders) == len(tm.add_feeders) == 14
    assert all(f.endswith("block.3.0") for f in tv.add_feeders) and all(f.endswith("conv_pwl") for f in tm.add_feeders)


def test_pre_skip_on_the_unet_is_the_concatenated_convs(analyses):
    cfg = recommend(analyses["digits_unet"], RecommendOptions("pre-skip"))
    assert [layer.name for layer in cfg.layers] == ["enc1.2", "enc2.2", "up2", "up1"]
    assert dict(cfg.strategy.params) == {"residual_additions": 0, "concatenations": 2, "requested": "pre-skip"}
    assert {layer.kind for layer in cfg.layers} == {"conv2d", "conv_transpose2d"}


def test_pre_skip_needs_a_traceable_model(analyses):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(GraphError, match="cannot trace Branchy with torch.fx"):
        skip_graph(Branchy())


def test_first_k_empirical_and_largest_change(analyses):
    a = analyses["digits_resnet"]
    convs = [layer for layer in a.layers if layer.is_conv]
    assert [layer.name for layer in recommend(a, RecommendOptions("first-k", k=3)).layers] == [
        layer.name for layer in convs[:3]
    ]
    top = recommend(a, RecommendOptions("empirical", top_k=2)).layers
    best = sorted(convs, key=lambda layer: -layer.summary.mean)[:2]
    assert {layer.name for layer in top} == {layer.name for layer in best}
    z = recommend(a, RecommendOptions("empirical", z=1.0))
    means = np.array([layer.summary.mean for layer in convs])
    med = np.median(means)
    mad = 1.4826 * np.median(np.abs(means - med))
    assert [layer.name for layer in z.layers] == [
        layer.name for layer, m in zip(convs, means, strict=True) if (m - med) / mad >= 1.0
    ]
    big = recommend(a, RecommendOptions("largest-change", top_k=3)).layers
    assert {layer.name for layer in big} == {
        layer.name for layer in sorted(convs, key=lambda layer: -abs(layer.summary.mean))[:3]
    }
    # largest-change without --top-k: the same robust z rule, on |mean|
    mags = np.abs(means)
    mmed = np.median(mags)
    mmad = 1.4826 * np.median(np.abs(mags - mmed))
    expected = [layer.name for layer, m in zip(convs, mags, strict=True) if (m - mmed) / mmad >= 1.0]
    assert expected and [layer.name for layer in recommend(a, RecommendOptions("largest-change")).layers] == expected


def test_the_z_rules_on_the_bundled_unet(analyses):
    """Worked values on the U-Net sample (per-position means from its analysis, -0.978 … -3.325)."""
    a = analyses["digits_unet"]
    means = {layer.name: layer.summary.mean for layer in a.layers}
    assert means["head"] == pytest.approx(-0.978, abs=5e-4) and means["enc2.0"] == pytest.approx(-3.325, abs=5e-4)
    emp = recommend(a, RecommendOptions("empirical"))
    assert [layer.name for layer in emp.layers] == ["enc1.0", "up1", "head"]
    big = recommend(a, RecommendOptions("largest-change"))
    assert [layer.name for layer in big.layers] == ["enc2.0", "bottleneck.2"]
    params = dict(big.strategy.params)
    assert params["median"] == pytest.approx(2.659, abs=5e-4) and params["mad_scaled"] == pytest.approx(0.519, abs=5e-4)


def test_auto_without_a_graph_falls_back_and_says_why(analyses):
    from dataclasses import replace

    a = analyses["digits_resnet"]
    blind = replace(a, model=replace(a.model, arch=None))  # e.g. a bare state dict analysed without --arch
    cfg = recommend(blind)
    assert cfg.strategy.name == "first" and [layer.name for layer in cfg.layers] == ["conv1"]
    assert cfg.strategy.rationale.startswith(
        "auto: the model's graph is not available (the graph-based strategies need"
    )
    with pytest.raises(OptionError, match="the graph-based strategies need the architecture"):
        recommend(blind, RecommendOptions("pre-skip"))
    # given the model, the graph is back
    assert recommend(blind, model=trained("digits_resnet")).strategy.name == "empirical"


def test_per_filter_lambdas():
    from entropyflow.recommend.placement import filter_lambdas

    v = np.array([-2.0, -2.1, -1.9, -2.2, -1.8, -6.0, -np.inf, -2.05])
    # finite values: Q1 = -2.1125, Q3 = -1.925, IQR 0.1875: low fence -2.39375; -6 and -inf are outliers
    assert filter_lambdas(v, 1e-3, "outliers") == (0, 0, 0, 0, 0, 1e-3, 1e-3, 0)
    assert filter_lambdas(v, 2e-3, "uniform") == (2e-3,) * 8
    assert filter_lambdas(v, 2e-3, "none") is None


def test_per_filter_outliers_in_a_config(analyses):
    a = analyses["digits_vgg"]
    cfg = recommend(a, RecommendOptions("first-k", k=4, per_filter="outliers"))
    assert dict(cfg.strategy.params)["per_filter"] == "outliers"
    for layer in cfg.layers:
        v = a.layer(layer.name).per_position
        q1, q3 = np.quantile(v, [0.25, 0.75])
        assert layer.filter_lambdas == tuple(1e-3 if x < q1 - 1.5 * (q3 - q1) else 0.0 for x in v)
    assert any("fine-tuning" in w for w in cfg.warnings)


def test_lambdas_and_forms(analyses):
    cfg = recommend(
        analyses["digits_autoencoder"], RecommendOptions("dense-first", lam_dense=3e-4, form="inverse", epsilon=1e-5)
    )
    assert cfg.layers[0].lam == 3e-4 and cfg.form == "inverse" and cfg.epsilon == 1e-5
    # trained: log|det W_enc| = +17.9, so 1/(|det|+ε) ≈ 1.7e-8 and its gradient 1/|det| of the log form's: inert too
    huge = [w for w in cfg.warnings if "inert" in w]
    assert len(huge) == 1 and "|det W| is huge (log|det| = 17.9)" in huge[0] and "use form: log" in huge[0]
    random = entropyflow.analyze("sample:digits_autoencoder", random_init=True)
    cfg = recommend(random, RecommendOptions("dense-first", form="inverse"))
    assert random.layers[0].logdet < -40  # |det| ~ 1e-20 ≪ ε: the stabilised form is inert
    assert any("inert" in w and "underflows" in w and "use form: log" in w for w in cfg.warnings)
    assert recommend(analyses["digits_vgg"], RecommendOptions("first", lam_conv=5e-3)).layers[0].lam == 5e-3


@pytest.mark.parametrize(
    "opts,frag",
    [
        (RecommendOptions("bogus"), "unknown strategy 'bogus'"),
        (RecommendOptions(form="square"), "unknown loss form 'square'"),
        (RecommendOptions(epsilon=-1e-4), "epsilon must be > 0"),
        (RecommendOptions("dense-first"), "selects no layer"),
    ],
)
def test_bad_recommend_options(analyses, opts, frag):
    with pytest.raises(OptionError, match=frag):
        recommend(analyses["digits_unet"], opts)


# --- config validation ----------------------------------------------------------------------


@pytest.fixture
def good(analyses, tmp_path):
    return yaml.safe_load(save_config(recommend(analyses["digits_vgg"]), tmp_path / "good.yaml").read_text())


@pytest.mark.parametrize(
    "edit,frag",
    [
        (lambda d: d.update(schema_version=2), "schema_version: 2 is not supported (expected 1)"),
        (lambda d: d["loss"].update(epsilon=-1e-4), "loss.epsilon: must be > 0"),
        (lambda d: d["loss"].update(form="cube"), "loss.form: 'cube' is not one of log, inverse"),
        (lambda d: d["layers"][0].update({"lambda": "lots"}), "layers[0].lambda: not a number ('lots')"),
        (lambda d: d["layers"][0].update({"lambda": float("nan")}), "layers[0].lambda: must be finite"),
        (lambda d: d["layers"][0].pop("weight_key"), "layers[0].weight_key: missing"),
        (
            lambda d: d["layers"][0].update(weight_shape=[16, "x"]),
            "layers[0].weight_shape: must be a list of non-negative integers",
        ),
        (
            lambda d: d["layers"][0].update(filter_lambdas=[1.0]),
            "layers[0].filter_lambdas: needs a conv layer and one value per filter (16)",
        ),
        (lambda d: d.update(channel_rule="last"), "channel_rule: 'last' is not one of first, mean"),
        (lambda d: d.pop("layers"), "layers: missing"),
        (lambda d: d.update(layers=[]), "layers: must be a non-empty list"),
        (lambda d: d.update(chanel_rule="first"), "chanel_rule: unknown field"),
        (lambda d: d["layers"][0].update(filter_lambda=[1.0]), "layers[0].filter_lambda: unknown field"),
        (lambda d: d["layers"][0].update(kind="conv4d"), "layers[0].kind: 'conv4d' is not conv1d/2d/3d"),
        (
            lambda d: d["layers"][0].update(weight_shape=[16, 1, 3]),
            "layers[0].weight_shape: a conv2d weight has 4 dimensions ([16, 1, 3])",
        ),
        (lambda d: d["layers"].append(dict(d["layers"][0])), "layers[1].name: 'features.0' is listed twice"),
        (
            lambda d: d["layers"][0].update(rows=[4, 4]),
            "layers[0].rows: must be [first, end) with first < end ([4, 4])",
        ),
        (lambda d: d.update(estimator="magic"), "estimator: 'magic' is not one of paper"),
        (lambda d: d["fingerprint"].update(sha256_16="xyz"), "fingerprint.sha256_16: must be 16 hex digits ('xyz')"),
        (lambda d: d["fingerprint"].update(layers="six"), "fingerprint.layers: must be a non-negative integer ('six')"),
        (lambda d: d["loss"].update(epsilon="tiny"), "loss.epsilon: not a number ('tiny')"),
        (lambda d: d.update(schema_version="1"), "schema_version: '1' is not supported (expected 1)"),
    ],
)
def test_bad_configs_name_the_field(good, tmp_path, edit, frag):
    edit(good)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(good))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert frag in str(exc.value)


def test_unknown_layer_in_config(good, tmp_path):
    good["layers"][0]["weight_key"] = "features.99.weight"
    good["layers"][0]["name"] = "features.99"
    with pytest.raises(ConfigError, match="layer features.99: the model has no parameter 'features.99.weight'"):
        EntropyRegularizer.from_config(trained("digits_vgg"), good)


def test_invalid_yaml_and_json(tmp_path):
    (tmp_path / "x.yaml").write_text("layers: [1, 2\n")
    with pytest.raises(ConfigError, match="x.yaml is not valid YAML"):
        load_config(tmp_path / "x.yaml")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ConfigError, match="x.json is not valid JSON"):
        load_config(tmp_path / "x.json")


def test_json_config_and_per_filter_lambdas(good, tmp_path):
    good["layers"][0]["filter_lambdas"] = [1e-3 * (i + 1) for i in range(16)]
    path = tmp_path / "l.json"
    path.write_text(json.dumps(good))
    model = trained("digits_vgg")
    reg = EntropyRegularizer.from_config(model, path)
    c11 = model.features[0].weight.detach()[:, 0, 0, 0].double()
    expected = -sum(1e-3 * (i + 1) * float(torch.log(c.abs())) for i, c in enumerate(c11))
    assert float(reg().detach()) == pytest.approx(expected, rel=1e-6)


# --- CLI ----------------------------------------------------------------------------------


def test_cli_recommend_from_saved_analysis_and_spec(cli, tmp_path):
    rep = tmp_path / "rep"
    assert cli("analyze", samples_dir() / "digits_unet.pt", "-o", rep, "-q", "--no-plot").exit_code == 0
    r = cli("recommend", rep / "analysis.json", "--strategy", "pre-skip", "-o", tmp_path / "l.yaml")
    assert r.exit_code == 0, r.stderr
    assert "strategy pre-skip" in r.stdout and "up2" in r.stdout
    cfg = load_config(tmp_path / "l.yaml")
    assert [layer.name for layer in cfg.layers] == ["enc1.2", "enc2.2", "up2", "up1"]
    assert len(dict(cfg.provenance)["analysis_sha256"]) == 64
    r = cli("recommend", "sample:digits_vgg", "--random-init", "-o", tmp_path / "r.json")
    assert r.exit_code == 0 and "random initialisation" in r.stdout
    assert json.loads((tmp_path / "r.json").read_text())["layers"][0]["name"] == "features.0"


@pytest.mark.parametrize(
    "args,frag",
    [
        (("--strategy", "nope"), "unknown strategy 'nope'"),
        (("--form", "cube"), "unknown loss form 'cube'"),
        (("--epsilon", "-1"), "epsilon must be > 0"),
        (("-o", "lambda.txt"), "use a .yaml, .yml or .json file name"),
        (("--per-filter", "some"), "unknown per-filter rule 'some'"),
        (("--k", "0"), "--k and --top-k must be at least 1"),
        (("--lambda", "abc"), "Invalid value for '--lambda'"),
        (("--lambda", "nan"), "--lambda must be a finite number"),
    ],
)
def test_cli_recommend_bad_options(cli, tmp_path, args, frag, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("recommend", *args) if "-o" in args else cli("recommend", "-o", tmp_path / "l.yaml", *args)
    assert_user_error(r, tmp_path / "l.yaml", frag)
    assert not list(tmp_path.glob("lambda*")) and not list(tmp_path.glob(".entropyflow-*"))
