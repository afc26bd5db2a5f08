"""``analysis.json``: the whole analysis with provenance, and the reader that restores it.

JSON has no infinities, so ``-inf`` is written as the string ``"-inf"`` (and read back). The
output is deterministic: the same analysis gives the same bytes (no timestamps).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import cast

import numpy as np

from .. import strictjson
from ..errors import CheckpointFormatError, InputNotFoundError, one_line
from ..estimate.reference import SeedReference
from ..estimate.results import (
    AnalysisResult,
    ConvGeometry,
    DenseGeometry,
    LayerResult,
    ModelInfo,
    SkippedModule,
    frozen_array,
)
from ..estimate.seeds import SeedStat
from ..estimate.stats import Summary
from ..text import brief, printable, shown
from ..vocab import CHANNEL_RULES, ChannelRule, Estimator, is_layer_kind

SCHEMA = "entropyflow.analysis/1"
CONVENTIONS = {
    "paper": {
        "log": "natural (nats)",
        "conv": "PyTorch cross-correlation; weight (C_out, C_in/groups, *kernel); transposed convs as the adjoint of "
        "the conv storing the same weight (filters = weight.shape[0])",
        "c11": "weight[f, 0, 0, ..., 0]: first tap of the first input channel of the filter's group",
        "per_position": "conv: log|c11| per output position; dense: log|det W[:m,:m]| / m",
        "total": "conv: completed determinant (sum over pivot taps) when exact, else n_out*log|c11|; dense: "
        "n_positions*log|det W[:m,:m]|",
        "layer_total": "sum of per-filter totals (each filter as its own map, as in the paper)",
        "dense": "log|det W[:m,:m]|, m = min(N, d), float64 slogdet (Theorem 3)",
    },
    "spectral": {
        "log": "natural (nats)",
        "conv": "circular boundary on the traced input grid; stride by space-to-depth, dilation by zero insertion, "
        "groups block-diagonal, transposed convs as adjoints; zero-padded layers are approximated by their "
        "circular limit (exact = false)",
        "per_position": "conv: sum over frequencies of log sigma_f(w) / number of frequencies, sigma_f(w) = "
        "sqrt(sum_c |FFT(k_fc)(w)|^2); dense: log sigma_i, one entry per singular direction",
        "total": "conv: sum over frequencies of log sigma_f(w) per filter; dense: n_positions*log sigma_i",
        "joint": "the whole layer as one map: conv sum over frequencies and groups of sum_i log sigma_i(K(w)), dense "
        "n_positions * sum_i log sigma_i(W)",
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


def layer_dict(layer: LayerResult) -> dict:
    g = layer.geometry
    geo = None
    if isinstance(g, ConvGeometry):
        geo = {
            "type": "conv",
            "in_size": list(g.in_size),
            "out_size": list(g.out_size),
            "kernel": list(g.kernel),
            "stride": list(g.stride),
            "pad_left": list(g.pad_left),
            "dilation": list(g.dilation),
            "padding_mode": g.padding_mode,
            "transposed": g.transposed,
            "source": g.source,
            "groups": g.groups,
        }
    elif isinstance(g, DenseGeometry):
        geo = {"type": "dense", "n_positions": g.n_positions}
    return {
        "index": layer.index,
        "name": layer.name,
        "kind": layer.kind,
        "module_type": layer.module_type,
        "weight_key": layer.weight_key,
        "weight_shape": list(layer.weight_shape),
        "filters": layer.filters,
        "traced": layer.traced,
        "calls": layer.calls,
        "inferred": layer.inferred,
        "geometry": geo,
        "exact": layer.exact,
        "reason": layer.reason,
        "notes": list(layer.notes),
        "total": _num(layer.total),
        "joint": _num(layer.joint),
        "logdet": _num(layer.logdet),
        "square": layer.square,
        **({"rows": list(layer.rows)} if layer.rows is not None else {}),
        **({"row_period": layer.row_period} if layer.row_period is not None else {}),
        **({"transposed": True} if layer.transposed else {}),
        "summary": {k: _num(v) for k, v in layer.summary.__dict__.items()},
        "per_filter": {
            "c11": _arr(layer.c11),
            "dh_per_position": _arr(layer.per_position),
            "dh_total": None if layer.totals is None else _arr(layer.totals),
        },
    }


def to_dict(r: AnalysisResult) -> dict:
    m = r.model
    return {
        "schema": SCHEMA,
        "entropyflow": dict(r.versions).get("entropyflow"),
        "model": {
            "spec": m.spec,
            "description": m.description,
            "format": m.format,
            "weights": m.weights,
            "files": list(m.files),
            "sha256": m.sha256,
            "arch": m.arch,
            "input_size": list(m.input_size) if m.input_size else None,
            **({"input_dtype": m.input_dtype} if m.input_dtype else {}),
            "walk": m.walk,
            "order": m.order,
            **({"random_init": True} if m.random_init else {}),
            **({"seed": m.seed} if m.seed is not None else {}),
        },
        "estimator": {"name": r.estimator, "channel_rule": r.channel_rule, "conventions": CONVENTIONS[r.estimator]},
        "device": r.device,
        "versions": dict(r.versions),
        "summary": r.counts,
        "warnings": list(r.warnings),
        "notes": list(r.notes),
        "layers": [layer_dict(layer) for layer in r.layers],
        "skipped": [
            {"name": s.name, "type": s.module_type, "reason": s.reason, "parameters": s.parameters} for s in r.skipped
        ],
    }


def reference_dict(ref: SeedReference) -> dict:
    """The ``random_init_reference`` block of ``analysis.json`` (``--compare random``)."""

    def stat(s: SeedStat | None) -> dict | None:
        if s is None:
            return None
        return {
            "value": _num(s.value),
            "seeds": [_num(v) for v in s.seeds],
            "mean": _num(s.mean),
            "sd": s.sd,
            "min": _num(s.lo),
            "max": _num(s.hi),
            "z": _num(s.z) if s.z is not None else None,
            "percentile": s.percentile,
            "p": s.p,
            "p_holm": s.p_holm,
            "outside": s.outside,
        }

    return {
        "seeds": list(ref.seeds),
        "alpha": ref.alpha,
        "test": "two-sided prediction test, t = (x - mean)/(sd*sqrt(1 + 1/N)) with N - 1 degrees of freedom, "
        "Holm-corrected over the layers per statistic; z = (x - mean)/sd; percentile counts ties half",
        "init_scheme": ref.init_scheme,
        "layers": [
            {
                "name": item.name,
                **{name: stat(s) for name, s in item.stats},
                "init": None
                if item.init is None
                else {
                    "scheme": item.init.scheme,
                    "dist": item.init.dist,
                    "scale": item.init.scale,
                    "mean": item.init.mean,
                    "median": item.init.median,
                    "ks": item.init.ks,
                },
            }  # fmt: skip
            for item in ref.layers
        ],
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


def analysis_json(r: AnalysisResult, reference: SeedReference | None = None) -> bytes:
    """The analysis (and, with ``--compare random``, its ``random_init_reference`` block) as JSON."""
    d = to_dict(r)
    if reference is not None:
        d["random_init_reference"] = reference_dict(reference)
    return (_dump(d) + "\n").encode("utf-8", "backslashreplace")  # lone surrogates as text


MAX_ANALYSIS_BYTES = 512 << 20
MAX_LAYERS = 200_000  # a mixture-of-experts LLM split per expert has tens of thousands
#: the largest |value| of an entropy (nats) or weight read back: real ones are below 1e15, and sums and
#: differences over MAX_LAYERS layers stay far from a double's overflow (1.8e308)
MAX_MAGNITUDE = 1e100
MAX_INT = 1 << 62  # counts, indices, sizes


def read_analysis(path: str | Path) -> AnalysisResult:
    """Restore an :class:`AnalysisResult` from ``analysis.json`` (or the folder holding it).

    The file is input like any checkpoint: every field is type-checked (a wrong type names the
    field), NaN is refused, nesting and size are bounded."""
    p = Path(path)
    where = printable(p)
    try:
        if p.is_dir():
            p = p / "analysis.json"
        if not p.is_file():
            raise InputNotFoundError(f"no such analysis file: {printable(p)}")
        d = strictjson.read(p, max_bytes=MAX_ANALYSIS_BYTES)
    except OSError as exc:
        raise InputNotFoundError(f"cannot read {where}: {exc.strerror or exc}") from exc
    except strictjson.JSONError as exc:
        raise CheckpointFormatError(
            f"{printable(p)} is not an entropyflow analysis ({SCHEMA}): {printable(one_line(exc, 200))}"
        ) from exc
    try:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise _Bad(f"schema {brief(d.get('schema') if isinstance(d, dict) else d, 40)}")
        return from_dict(d)
    except (_Bad, ValueError) as exc:
        raise CheckpointFormatError(
            f"{printable(p)} is not an entropyflow analysis ({SCHEMA}): {printable(one_line(exc, 200))}"
        ) from exc


class _Bad(ValueError):
    """A field of analysis.json with the wrong type or value."""


def _get(d: dict, key: str, where: str, kinds, *, optional: bool = False):
    if not isinstance(d, dict):
        raise _Bad(f"{where or 'top level'}: must be an object")
    if key not in d:
        if optional:
            return None
        raise _Bad(f"{where}{key}: missing")
    v = d[key]
    if v is None and optional:
        return None
    ok = isinstance(v, kinds) and not (
        isinstance(v, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,))
    )
    if not ok:
        raise _Bad(f"{where}{key}: wrong type ({shown(v, 40)})")
    if type(v) is int and not -MAX_INT <= v <= MAX_INT:
        raise _Bad(f"{where}{key}: {brief(v, 30)} is beyond ±2^62, not a value entropyflow writes")
    return v


def _ints(v, where: str, minimum: int = 0) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(type(x) is int and minimum <= x <= MAX_INT for x in v):
        raise _Bad(f"{where}: must be a list of integers ≥ {minimum} ({shown(v, 40)})")
    return tuple(v)


def _strs(v, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Bad(f"{where}: must be a list of strings ({shown(v, 40)})")
    return tuple(v)


def _value(v, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, str) and v in ("-inf", "inf"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"{where}: not a number ({shown(v, 40)})")
    if not abs(v) <= MAX_MAGNITUDE:  # ints of ≤ 64 digits (strictjson) compare exactly
        raise _Bad(f"{where}: {v:.3g} is beyond ±{MAX_MAGNITUDE:g}, not a value entropyflow writes")
    return float(v)


def _values(v: object, where: str, *, finite_or_neginf: bool = False) -> np.ndarray:
    if not isinstance(v, list):
        raise _Bad(f"{where}: must be a list of numbers ({shown(v, 40)})")
    out: list[float] = []
    for i, x in enumerate(v):
        value = _value(x, f"{where}[{i}]")
        if value is None or (finite_or_neginf and value == math.inf):
            raise _Bad(f'{where}: must hold numbers (or "-inf")')
        out.append(value)
    return frozen_array(out)


def from_dict(d: dict) -> AnalysisResult:
    """Validate and restore an analysis from its dict form (see :func:`read_analysis`)."""
    m = _get(d, "model", "", dict)
    est = _get(d, "estimator", "", dict)
    estimator, rule = _get(est, "name", "estimator.", str), _get(est, "channel_rule", "estimator.", str)
    if estimator not in CONVENTIONS:
        raise _Bad(f"estimator.name: {printable(estimator, 40)!r} is not one of {', '.join(CONVENTIONS)}")
    if rule not in CHANNEL_RULES:
        raise _Bad(f"estimator.channel_rule: {printable(rule, 40)!r} is not first or mean")
    layers = []
    raw_layers = _get(d, "layers", "", list)
    if len(raw_layers) > MAX_LAYERS:
        raise _Bad(f"layers: more than {MAX_LAYERS:,} layers ({len(raw_layers):,})")
    for i, item in enumerate(raw_layers):
        layers.append(_layer(item, f"layers[{i}]."))
    if [layer.index for layer in layers] != list(range(1, len(layers) + 1)):
        raise _Bad("layers: indices must run 1, 2, 3, …")
    size = _get(m, "input_size", "model.", list, optional=True)
    info = ModelInfo(
        _get(m, "spec", "model.", str),
        _get(m, "description", "model.", str),
        _get(m, "format", "model.", str),
        _get(m, "weights", "model.", str),
        _strs(_get(m, "files", "model.", list), "model.files"),
        _get(m, "sha256", "model.", str, optional=True),
        _get(m, "arch", "model.", str, optional=True),
        _ints(size, "model.input_size", 1) if size is not None else None,
        _get(m, "walk", "model.", str),
        _random_init(m),
        _get(m, "seed", "model.", int, optional=True),
        _get(m, "input_dtype", "model.", str, optional=True),
    )
    skipped = []
    for i, s_ in enumerate(_get(d, "skipped", "", list)):
        w = f"skipped[{i}]."
        skipped.append(
            SkippedModule(
                _get(s_, "name", w, str),
                _get(s_, "type", w, str),
                _get(s_, "reason", w, str),
                _get(s_, "parameters", w, int),
            )
        )
    versions = _get(d, "versions", "", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items()):
        raise _Bad("versions: must map names to version strings")
    return AnalysisResult(
        model=info,
        estimator=cast(Estimator, estimator),
        channel_rule=cast(ChannelRule, rule),
        device=_get(d, "device", "", str),
        layers=tuple(layers),
        skipped=tuple(skipped),
        warnings=_strs(_get(d, "warnings", "", list), "warnings"),
        notes=_strs(_get(d, "notes", "", list), "notes"),
        versions=tuple(versions.items()),
    )


def _random_init(m: dict) -> bool:
    """``model.random_init`` (written only when true); files of entropyflow 0.1.0 lack it and say
    so only in ``model.weights``, which reads "random init (torch.manual_seed(N))" there."""
    flag = _get(m, "random_init", "model.", bool, optional=True)
    if flag is not None:
        return flag
    return bool(re.fullmatch(r"random init \(torch\.manual_seed\(\d+\)\)", m["weights"]))


def _rows(item: dict, w: str) -> tuple[int, int] | None:
    raw = _get(item, "rows", w, list, optional=True)
    if raw is None:
        return None
    first, end = _ints(raw, f"{w}rows")
    if first >= end:
        raise _Bad(f"{w}rows: must be [first, end) with first < end")
    return first, end


def _layer(item, w: str) -> LayerResult:
    kind = _get(item, "kind", w, str)
    if not is_layer_kind(kind):
        raise _Bad(f"{w}kind: {printable(kind, 40)!r} is not a layer kind entropyflow writes")
    shape = _ints(_get(item, "weight_shape", w, list), f"{w}weight_shape")
    g = _get(item, "geometry", w, dict, optional=True)
    geo: ConvGeometry | DenseGeometry | None = None
    if g is not None:
        t = _get(g, "type", f"{w}geometry.", str)
        gw = f"{w}geometry."
        if t == "conv":
            geo = ConvGeometry(
                _ints(_get(g, "in_size", gw, list), gw + "in_size", 1),
                _ints(_get(g, "out_size", gw, list), gw + "out_size", 1),
                _ints(_get(g, "kernel", gw, list), gw + "kernel", 1),
                _ints(_get(g, "stride", gw, list), gw + "stride", 1),
                _ints(_get(g, "pad_left", gw, list), gw + "pad_left"),
                _ints(_get(g, "dilation", gw, list), gw + "dilation", 1),
                _get(g, "padding_mode", gw, str),
                _get(g, "transposed", gw, bool),
                _get(g, "source", gw, str),
                _get(g, "groups", gw, int, optional=True) or 1,
            )
        elif t == "dense":
            geo = DenseGeometry(_get(g, "n_positions", gw, int))
        else:
            raise _Bad(f"{gw}type: {printable(t, 20)!r} is not conv or dense")
    pf = _get(item, "per_filter", w, dict)
    per = _values(
        _get(pf, "dh_per_position", f"{w}per_filter.", list), f"{w}per_filter.dh_per_position", finite_or_neginf=True
    )
    totals_raw = _get(pf, "dh_total", f"{w}per_filter.", list, optional=True)
    totals = None if totals_raw is None else _values(totals_raw, f"{w}per_filter.dh_total")
    c11 = _values(_get(pf, "c11", f"{w}per_filter.", list), f"{w}per_filter.c11")
    if totals is not None and totals.size != per.size:
        raise _Bad(f"{w}per_filter: dh_total and dh_per_position differ in length")
    sm = _get(item, "summary", w, dict)
    counts = {f: _get(sm, f, f"{w}summary.", int) for f in ("n", "n_finite", "n_neginf")}
    stats = {f: _value(sm.get(f), f"{w}summary.{f}") for f in ("mean", "std", "min", "q1", "median", "q3", "max")}
    summary = Summary(
        counts["n"],
        counts["n_finite"],
        counts["n_neginf"],
        stats["mean"],
        stats["std"],
        stats["min"],
        stats["q1"],
        stats["median"],
        stats["q3"],
        stats["max"],
    )
    exact = item.get("exact")
    if exact is not None and not isinstance(exact, bool):
        raise _Bad(f"{w}exact: must be true, false or null ({shown(exact, 20)})")
    square = _get(item, "square", w, int, optional=True)
    return LayerResult(
        index=_get(item, "index", w, int),
        name=_get(item, "name", w, str),
        kind=kind,
        module_type=_get(item, "module_type", w, str),
        weight_key=_get(item, "weight_key", w, str),
        weight_shape=shape,
        traced=_get(item, "traced", w, bool),
        calls=_get(item, "calls", w, int),
        geometry=geo,
        c11=c11,
        per_position=per,
        totals=totals,
        exact=exact,
        reason=_get(item, "reason", w, str),
        summary=summary,
        logdet=_value(item.get("logdet"), f"{w}logdet"),
        square=square,
        inferred=_get(item, "inferred", w, bool),
        notes=_strs(_get(item, "notes", w, list), f"{w}notes"),
        joint=_value(item.get("joint"), f"{w}joint"),
        rows=_rows(item, w),
        row_period=_get(item, "row_period", w, int, optional=True),
        transposed=bool(_get(item, "transposed", w, bool, optional=True)),
    )
