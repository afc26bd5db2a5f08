"""``analysis.json``: the whole analysis with provenance, and the reader that restores it.

JSON has no infinities, so ``-inf`` is written as the string ``"-inf"`` (and read back). The
output is deterministic: the same analysis gives the same bytes (no timestamps).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import CheckpointFormatError, InputNotFoundError
from ..estimate.stats import Summary
from ..results import AnalysisResult, ConvGeometry, DenseGeometry, LayerResult, ModelInfo, SkippedModule, frozen_array

SCHEMA = "entropyflow.analysis/1"
CONVENTIONS = {
    "paper": {
        "log": "natural (nats)",
        "conv": "PyTorch cross-correlation; weight (C_out, C_in/groups, *kernel); transposed convs as the adjoint of the conv storing the same weight (filters = weight.shape[0])",
        "c11": "weight[f, 0, 0, ..., 0]: first tap of the first input channel of the filter's group",
        "per_position": "conv: log|c11| per output position; dense: log|det W[:m,:m]| / m",
        "total": "conv: completed determinant (sum over pivot taps) when exact, else n_out*log|c11|; dense: n_positions*log|det W[:m,:m]|",
        "layer_total": "sum of per-filter totals (each filter as its own map, as in the paper)",
        "dense": "log|det W[:m,:m]|, m = min(N, d), float64 slogdet (Theorem 3)",
    },
    "spectral": {
        "log": "natural (nats)",
        "conv": "circular boundary on the traced input grid; stride by space-to-depth, dilation by zero insertion, groups block-diagonal, transposed convs as adjoints; zero-padded layers are approximated by their circular limit (exact = false)",
        "per_position": "conv: sum over frequencies of log sigma_f(w) / number of frequencies, sigma_f(w) = sqrt(sum_c |FFT(k_fc)(w)|^2); dense: log sigma_i, one entry per singular direction",
        "total": "conv: sum over frequencies of log sigma_f(w) per filter; dense: n_positions*log sigma_i",
        "joint": "the whole layer as one map: conv sum over frequencies and groups of sum_i log sigma_i(K(w)), dense n_positions * sum_i log sigma_i(W)",
        "dense": "sum_i log sigma_i(W), float64 svdvals (log-volume on the row space; the entropy change for square W)",
    },
}


def _num(v):
    if isinstance(v, float) and math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return v


def _unnum(v):
    return float(v) if isinstance(v, str) and v in ("-inf", "inf") else v


def _arr(a) -> list:
    return [_num(float(x)) for x in a]


def layer_dict(l: LayerResult) -> dict:
    g = l.geometry
    geo = None
    if isinstance(g, ConvGeometry):
        geo = {"type": "conv", "in_size": list(g.in_size), "out_size": list(g.out_size), "kernel": list(g.kernel),
               "stride": list(g.stride), "pad_left": list(g.pad_left), "dilation": list(g.dilation),
               "padding_mode": g.padding_mode, "transposed": g.transposed, "source": g.source, "groups": g.groups}
    elif isinstance(g, DenseGeometry):
        geo = {"type": "dense", "n_positions": g.n_positions}
    return {
        "index": l.index, "name": l.name, "kind": l.kind, "module_type": l.module_type, "weight_key": l.weight_key,
        "weight_shape": list(l.weight_shape), "filters": l.filters, "traced": l.traced, "calls": l.calls,
        "inferred": l.inferred, "geometry": geo, "exact": l.exact, "reason": l.reason, "notes": list(l.notes),
        "total": _num(l.total), "joint": _num(l.joint), "logdet": _num(l.logdet), "square": l.square,
        "summary": {k: _num(v) for k, v in l.summary.__dict__.items()},
        "per_filter": {"c11": _arr(l.c11), "dh_per_position": _arr(l.per_position),
                       "dh_total": None if l.totals is None else _arr(l.totals)},
    }


def to_dict(r: AnalysisResult) -> dict:
    m = r.model
    return {
        "schema": SCHEMA,
        "entropyflow": dict(r.versions).get("entropyflow"),
        "model": {"spec": m.spec, "description": m.description, "format": m.format, "weights": m.weights,
                  "files": list(m.files), "sha256": m.sha256, "arch": m.arch,
                  "input_size": list(m.input_size) if m.input_size else None, "walk": m.walk},
        "estimator": {"name": r.estimator, "channel_rule": r.channel_rule, "conventions": CONVENTIONS[r.estimator]},
        "device": r.device,
        "versions": dict(r.versions),
        "summary": r.counts,
        "warnings": list(r.warnings),
        "notes": list(r.notes),
        "layers": [layer_dict(l) for l in r.layers],
        "skipped": [{"name": s.name, "type": s.module_type, "reason": s.reason, "parameters": s.parameters} for s in r.skipped],
    }


def _dump(obj, indent: int = 0) -> str:
    """JSON with dict entries on their own lines and lists of scalars on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + _dump(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False, ensure_ascii=False)


def analysis_json(r: AnalysisResult) -> bytes:
    return (_dump(to_dict(r)) + "\n").encode()


def read_analysis(path: str | Path) -> AnalysisResult:
    """Restore an :class:`AnalysisResult` from ``analysis.json`` (or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "analysis.json"
    if not p.is_file():
        raise InputNotFoundError(f"no such analysis file: {p}")
    try:
        d = json.loads(p.read_text())
        if d.get("schema") != SCHEMA:
            raise ValueError(f"schema {d.get('schema')!r}")
        return from_dict(d)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointFormatError(f"{p} is not an entropyflow analysis ({SCHEMA}): {exc}") from None


def from_dict(d: dict) -> AnalysisResult:
    m = d["model"]
    layers = []
    for l in d["layers"]:
        g = l["geometry"]
        if g and g["type"] == "conv":
            geo = ConvGeometry(tuple(g["in_size"]), tuple(g["out_size"]), tuple(g["kernel"]), tuple(g["stride"]),
                               tuple(g["pad_left"]), tuple(g["dilation"]), g["padding_mode"], g["transposed"], g["source"],
                               g.get("groups", 1))
        elif g and g["type"] == "dense":
            geo = DenseGeometry(g["n_positions"])
        else:
            geo = None
        pf = l["per_filter"]
        layers.append(LayerResult(
            index=l["index"], name=l["name"], kind=l["kind"], module_type=l["module_type"], weight_key=l["weight_key"],
            weight_shape=tuple(l["weight_shape"]), traced=l["traced"], calls=l["calls"], geometry=geo,
            c11=frozen_array([_unnum(v) for v in pf["c11"]]), per_position=frozen_array([_unnum(v) for v in pf["dh_per_position"]]),
            totals=None if pf["dh_total"] is None else frozen_array([_unnum(v) for v in pf["dh_total"]]),
            exact=l["exact"], reason=l["reason"], summary=Summary(**{k: _unnum(v) for k, v in l["summary"].items()}),
            logdet=_unnum(l["logdet"]), square=l["square"], inferred=l["inferred"], notes=tuple(l["notes"]),
            joint=_unnum(l.get("joint")),
        ))
    info = ModelInfo(m["spec"], m["description"], m["format"], m["weights"], tuple(m["files"]), m["sha256"], m["arch"],
                     tuple(m["input_size"]) if m["input_size"] else None, m["walk"])
    return AnalysisResult(
        model=info, estimator=d["estimator"]["name"], channel_rule=d["estimator"]["channel_rule"], device=d["device"],
        layers=tuple(layers), skipped=tuple(SkippedModule(s["name"], s["type"], s["reason"], s["parameters"]) for s in d["skipped"]),
        warnings=tuple(d["warnings"]), notes=tuple(d["notes"]), versions=tuple(d["versions"].items()),
    )
