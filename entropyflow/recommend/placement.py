"""Where to put the entropy loss: the strategies of the paper (SPEC §6) over a saved analysis.

Each strategy returns the chosen layers and a rationale citing the finding it encodes. λ is
conv λ2 = 1e-3 and dense λ1 = 1e-4 by default (the paper's best ranges), overridable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NoReturn

import numpy as np
from torch import nn

from .. import vocab
from .._version import __version__
from ..config import LambdaConfig, LayerLambda, Strategy, fingerprint
from ..errors import EntropyflowError, OptionError, one_line
from ..estimate import registry
from ..estimate.results import AnalysisResult, LayerResult
from ..load import zoo
from ..lossform import dense_inverse_inertness
from ..spec import parse_spec
from ..words import arg, option
from .skips import GraphError, skip_graph

STRATEGIES = ("auto", "first", "first-k", "pre-skip", "empirical", "largest-change", "dense-first", "all")
PER_FILTER = ("none", "uniform", "outliers")

RATIONALE = {
    "all": "Entropy loss on every conv layer (every dense layer of a model without convs). The paper's small CNNs "
    "for CIFAR-10 (Table 1) found that this gives no gain, while the first layer alone does: a control placement.",
    "first": "Entropy loss on the first conv layer only (the first dense layer of a model without convs). "
    "The paper's VGG16 experiments (Table 2) found the loss on "
    "layer [1] alone beat layers [1, 2], and on small CNNs for CIFAR-10 (Table 1) the first layer alone helped "
    "while all layers gave no gain: preserving entropy early keeps information the rest of the network needs.",
    "first-k": "Entropy loss on the first k conv layers (dense layers in a model without convs), the "
    "generalisation of the paper's VGG16 placements [1] and "
    "[1, 2] (Table 2; [1] was best there, so prefer k = 1 unless you have evidence otherwise).",
    "pre-skip": "Entropy loss on the convs whose outputs reach a residual addition or a skip concatenation through "
    "norms/activations only. The paper's ResNet-50 placements include 'pre-skip' (the convs feeding the "
    "residual additions), so that the information carried past the skip is preserved.",
    "empirical": "Entropy loss on the most entropy-preserving layers of a well-trained network of the same "
    "architecture (highest mean per-position change), the paper's Figure 7 strategy; for ResNet-50 this "
    "'empirical' placement (from Figure 8) gave the best accuracy.",
    "largest-change": "Entropy loss on the layers with the largest entropy change in a trained network, the paper's "
    "U-Net placement (§5.5, Table 3: about 10% faster training with λ2 = 1e-3…1e-2). The paper does "
    "not say whether 'largest change' is the biggest drop or the highest value; here it is the "
    "magnitude |mean per-position change| (the highest values are the empirical strategy). In the "
    "paper's U-Net these layers fed the up-path concatenations: pre-skip targets those directly.",
    "dense-first": "Entropy loss on the first dense layer (its log|det|), the paper's dense-autoencoder finding "
    "(§5.2): "
    "λ1 ≥ 1e-4 on the first weight matrix cut the epochs to convergence by up to 80% at marginally "
    "higher MSE.",
}


@dataclass(frozen=True)
class RecommendOptions:
    strategy: str = "auto"
    k: int = 1  # first-k
    top_k: int | None = None  # empirical / largest-change: this many layers instead of the z-score rule
    z: float = 1.0  # empirical / largest-change: robust z-score threshold
    lam_conv: float = 1e-3  # λ2
    lam_dense: float = 1e-4  # λ1
    form: str = "log"
    epsilon: float = 1e-4
    per_filter: str = "none"  # none | uniform | outliers (see PER_FILTER)


def recommend(
    analysis: AnalysisResult,
    options: RecommendOptions | None = None,
    *,
    model: nn.Module | None = None,
    analysis_sha256: str | None = None,
) -> LambdaConfig:
    """A λ placement config for ``analysis``. ``model`` (any nn.Module of the architecture, e.g.
    on the meta device) is needed for 'pre-skip' and helps 'auto'; without it, it is rebuilt from
    the analysis' architecture spec when that is known."""
    opts = options or RecommendOptions()
    validate_options(opts)
    notes: list[str] = []
    name = opts.strategy
    graph = None
    if name in ("auto", "pre-skip"):
        try:
            graph = skip_graph(model if model is not None else architecture(analysis))
        except EntropyflowError as exc:  # its message names no option: auto saves it in the rationale
            if name == "pre-skip":
                _no_graph_for_pre_skip(exc)
            notes.append(f"auto: the model's graph is not available ({one_line(exc, 200)}).")
    if name == "auto":
        name, why = _auto(analysis, graph)
        notes.append(why)
    layers, params, extra = _choose(name, analysis, opts, graph)
    if not layers:
        raise OptionError(
            f"strategy '{name}' selects no layer of {analysis.model.spec} ({extra or 'nothing qualifies'})"
        )
    chosen = tuple(_lambda(layer, opts) for layer in layers)
    warnings = _warnings(analysis, chosen, opts)
    fp, n = fingerprint((layer.weight_key, layer.weight_shape) for layer in analysis.layers)
    rationale = " ".join([*notes, RATIONALE[name], extra]).strip()
    if opts.per_filter != "none":
        params = {**params, "per_filter": opts.per_filter}
    return LambdaConfig(
        model=analysis.model.arch or analysis.model.spec,
        fingerprint=fp,
        fingerprint_layers=n,
        estimator=analysis.estimator,
        channel_rule=analysis.channel_rule,
        form=opts.form,
        epsilon=opts.epsilon,
        strategy=Strategy(name, tuple(params.items()) + (("requested", opts.strategy),), rationale),
        layers=chosen,
        provenance=(
            ("analysis_sha256", analysis_sha256),
            ("analysed_spec", analysis.model.spec),
            ("analysed_weights", analysis.model.weights),
            ("analysed_sha256", analysis.model.sha256),
            ("tool", f"entropyflow {__version__}"),
            ("created", datetime.now(timezone.utc).replace(microsecond=0).isoformat()),
        ),
        warnings=tuple(warnings),
    )


def architecture(analysis: AnalysisResult) -> nn.Module:
    """The analysed architecture on the meta device (for graph-based strategies)."""
    arch = analysis.model.arch
    if not arch:
        raise OptionError(
            f"the graph-based strategies need the architecture of {analysis.model.spec}, which the analysis does "
            "not name"
        )
    return zoo.build(parse_spec(arch))


def _no_graph_for_pre_skip(exc: EntropyflowError) -> NoReturn:
    """Re-raise why the graph is missing with what to do about it, in the caller's words."""
    if isinstance(exc, GraphError):
        raise GraphError(f"{exc}: use {option('strategy')} empirical, first or largest-change") from exc
    if isinstance(exc, OptionError):
        raise OptionError(
            f"{exc}: analyse with {arg('arch')}, or use {option('strategy')} first, empirical or largest-change"
        ) from exc
    raise exc


def validate_options(opts: RecommendOptions) -> None:
    """OptionError for an unusable option (checked before any analysis runs)."""
    if opts.strategy not in STRATEGIES:
        raise OptionError(f"unknown strategy '{opts.strategy}' (use {', '.join(STRATEGIES)})")
    vocab.loss_form(opts.form)
    if not (opts.epsilon > 0 and math.isfinite(opts.epsilon)):
        raise OptionError(f"epsilon must be > 0 (got {opts.epsilon})")
    if opts.per_filter not in PER_FILTER:
        raise OptionError(f"unknown per-filter rule '{opts.per_filter}' (use {', '.join(PER_FILTER)})")
    if opts.k < 1 or (opts.top_k is not None and opts.top_k < 1):
        raise OptionError(f"{option('k')} and {option('top-k')} must be at least 1")
    for v, what in ((opts.lam_conv, "lambda"), (opts.lam_dense, "lambda-dense"), (opts.z, "z")):
        if not math.isfinite(v):
            raise OptionError(f"{option(what)} must be a finite number (got {v})")


def _auto(analysis: AnalysisResult, graph) -> tuple[str, str]:
    convs = [layer for layer in analysis.layers if layer.is_conv]
    if not convs:
        return "dense-first", "auto: the model has no conv layers (an MLP or autoencoder), so dense-first."
    if graph is None:
        return "first", (
            "auto: without the graph, residual additions and concatenations cannot be seen, so the plain-CNN "
            "rule, first (the graph needs the architecture; or choose empirical or largest-change yourself)."
        )
    if graph.add_feeders:
        both = f" (and {graph.n_cats} concatenations)" if graph.cat_feeders else ""
        return (
            "empirical",
            f"auto: the graph has {graph.n_adds} residual additions{both} (a ResNet-like network), so empirical.",
        )
    if graph.cat_feeders:
        return (
            "largest-change",
            f"auto: the graph has {graph.n_cats} skip concatenations (a U-Net-like network), so largest-change.",
        )
    return "first", "auto: a plain CNN (no residual additions, no concatenations), so first."


def robust_z(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(v − median) / (1.4826·MAD)`` (zeros when the MAD is 0), the median and the scaled MAD."""
    med = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - med)))
    return ((values - med) / mad if mad > 0 else np.zeros_like(values)), med, mad


def _ranked(
    scored: list[LayerResult], score: np.ndarray, opts: RecommendOptions, what: str
) -> tuple[list[LayerResult], dict, str]:
    """The layers with the highest ``score``: the top k, or those with a robust z-score ≥ o.z."""
    if opts.top_k:
        order = np.argsort(-score, kind="stable")[: opts.top_k]
        return (
            sorted((scored[i] for i in order), key=lambda layer: layer.index),
            {"top_k": opts.top_k},
            f"Chosen: the {min(opts.top_k, len(scored))} conv layers with the highest {what}.",
        )
    z, med, mad = robust_z(score)
    chosen = [layer for layer, zi in zip(scored, z, strict=True) if zi >= opts.z]
    extra = (
        f"Chosen: conv layers whose {what} has a robust z-score ≥ {opts.z:g} over the {len(scored)} conv layers "
        f"(median {med:.3f} nats, 1.4826·MAD {mad:.3f})."
    )
    if not chosen:
        chosen = [scored[int(np.argmax(score))]]
        extra += " None reached it, so the single highest layer is used."
    return chosen, {"z": opts.z, "median": round(med, 6), "mad_scaled": round(mad, 6)}, extra


def _choose(name: str, analysis: AnalysisResult, opts: RecommendOptions, graph) -> tuple[list[LayerResult], dict, str]:
    convs = [layer for layer in analysis.layers if layer.is_conv]
    if name in ("first", "first-k"):
        k = 1 if name == "first" else opts.k
        if convs:
            return convs[:k], {"k": k}, ""
        dense = [layer for layer in analysis.layers if not layer.is_conv]
        what = "the first dense layer" if k == 1 else f"the first {k} dense layers"
        return dense[:k], {"k": k, "kind": "dense"}, f"The model has no conv layer, so {name} takes {what}."
    if name == "dense-first":
        dense = [layer for layer in analysis.layers if not layer.is_conv]
        return dense[:1], {}, ""
    if name == "all":
        return (convs or [layer for layer in analysis.layers if not layer.is_conv]), {}, ""
    if name == "pre-skip":
        feeders = set(graph.add_feeders) | set(graph.cat_feeders)
        why = (
            ""
            if feeders
            else (
                f"its graph has {graph.n_adds} residual additions and {graph.n_cats} concatenations, "
                "none fed by a conv through norms/activations only"
            )
        )
        return (
            [layer for layer in convs if layer.name in feeders],
            {"residual_additions": graph.n_adds, "concatenations": graph.n_cats},
            why,
        )
    scored = [layer for layer in convs if layer.summary.mean is not None]
    if not scored:
        return [], {}, "no conv layer has a finite mean"
    means = np.array([layer.summary.mean for layer in scored])
    if name == "empirical":
        return _ranked(scored, means, opts, "mean per-position change")
    return _ranked(scored, np.abs(means), opts, "|mean per-position change|")  # largest-change


def _lambda(layer: LayerResult, opts: RecommendOptions) -> LayerLambda:
    rows = layer.rows
    if rows is None and layer.kind.startswith("attention_") and layer.weight_key.endswith("in_proj_weight"):
        e, part = layer.weight_shape[0], "qkv".index(layer.kind[-1])  # analyses saved before rows were recorded
        rows = (part * e, (part + 1) * e)
    lam = opts.lam_conv if layer.is_conv else opts.lam_dense
    return LayerLambda(
        name=layer.name,
        kind=layer.kind,
        weight_key=layer.weight_key,
        weight_shape=tuple(layer.weight_shape),
        lam=lam,
        filter_lambdas=filter_lambdas(layer.per_position, lam, opts.per_filter) if layer.is_conv else None,
        rows=rows,
        row_period=layer.row_period,
        transposed=layer.transposed,
    )


def filter_lambdas(per_position: np.ndarray, lam: float, rule: str) -> tuple[float, ...] | None:
    """Per-filter λ (the paper's λ2^{ℓd}). 'uniform': λ for every filter, written out to edit by
    hand. 'outliers': λ on the filters that are low outliers of the reference layer (below
    Q1 − 1.5·IQR of its finite values, or c11 = 0: the open dots of Figures 1, 8, 9), 0 elsewhere."""
    if rule == "none":
        return None
    v = np.asarray(per_position, dtype=np.float64)
    if rule == "uniform":
        return tuple(float(lam) for _ in v)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return tuple(float(lam) for _ in v)
    q1, q3 = np.quantile(finite, [0.25, 0.75])
    low = q1 - 1.5 * (q3 - q1)
    return tuple(float(lam) if (not np.isfinite(x) or x < low) else 0.0 for x in v)


def _warnings(analysis: AnalysisResult, chosen: tuple[LayerLambda, ...], opts: RecommendOptions) -> list[str]:
    out = []
    if analysis.model.random_init:
        out.append(
            "the reference analysis is a random initialisation: the paper's strategies need a well-trained "
            "network of the architecture (Figure 7); use pretrained weights for the reference"
        )
    if opts.per_filter == "outliers":
        out.append(
            "per-filter λ from 'outliers' refers to the reference's filter indices: it means something only when "
            "training starts from the reference's weights (fine-tuning), not from a fresh initialisation"
        )
        idle = [c.name for c in chosen if c.filter_lambdas is not None and not any(c.filter_lambdas)]
        if idle:
            out.append(f"layers with no outlier filter get λ = 0 on every filter (no term): {', '.join(idle)}")
    by_name = {layer.name: layer for layer in reversed(analysis.layers)}  # the first of a name, in linear time
    for c in chosen:
        layer = by_name[c.name]
        if c.is_conv and opts.form == "log" and layer.summary.n_neginf:
            out.append(
                f"layer {c.name}: {layer.summary.n_neginf} filters of the reference have c11 = 0, where the log "
                "form is +inf if training starts from these weights: use form: inverse there"
            )
        # the inverse form uses det of the square part
        paper_logdet = layer.logdet if registry.get(analysis.estimator).square_logdet else None
        why = (
            dense_inverse_inertness(paper_logdet, opts.epsilon)
            if not c.is_conv and opts.form == "inverse" and paper_logdet is not None
            else None
        )
        if why:
            out.append(f"layer {c.name}: the stabilised dense form 1/(|det W|+ε) is inert here ({why}): use form: log")
    return out
