"""``analysis.json``: the whole analysis with provenance, and the reader that restores it.

JSON has no infinities, so ``-inf`` is written as the string ``"-inf"`` (and read back). The
output is deterministic: the same analysis gives the same bytes (no timestamps).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, cast

import numpy as np

from .. import strictjson
from ..errors import CheckpointFormatError, InputNotFoundError, one_line
from ..estimate import registry
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


def _num(v):
    if isinstance(v, float) and math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return v


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
        "estimator": {
            "name": r.estimator,
            "channel_rule": r.channel_rule,
            "conventions": registry.conventions(r.estimator),
        },
        "device": r.device,
        "versions": dict(r.versions),
        "summary": asdict(r.counts),
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
    if estimator not in registry.names():
        raise _Bad(f"estimator.name: {printable(estimator, 40)!r} is not one of {', '.join(registry.names())}")
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
    info = ModelInfo(**_fields(ModelInfo, m, "model.", _MODEL_FIELDS))
    skipped = [
        SkippedModule(**_fields(SkippedModule, s_, f"skipped[{i}].", _SKIPPED_FIELDS))
        for i, s_ in enumerate(_get(d, "skipped", "", list))
    ]
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


# --- the fields of each result type, read by their annotations --------------------------------------

_Reader = Callable[[dict, str, str], Any]  # (the object, its key, where it is) → the field's value

#: how a field of each annotation is read; a field with any other annotation has its own reader
_BY_TYPE: dict[str, _Reader] = {
    "int": lambda d, k, w: _get(d, k, w, int),
    "int | None": lambda d, k, w: _get(d, k, w, int, optional=True),
    "str": lambda d, k, w: _get(d, k, w, str),
    "str | None": lambda d, k, w: _get(d, k, w, str, optional=True),
    "bool": lambda d, k, w: _get(d, k, w, bool),
    "float | None": lambda d, k, w: _value(d.get(k), f"{w}{k}"),
    "tuple[str, ...]": lambda d, k, w: _strs(_get(d, k, w, list), f"{w}{k}"),
    "tuple[int, ...]": lambda d, k, w: _ints(_get(d, k, w, list), f"{w}{k}"),
}


def _fields(
    cls: type, d: object, w: str, readers: Mapping[str, _Reader] | None = None, names: Iterable[str] | None = None
) -> dict[str, Any]:
    """Keyword arguments of dataclass ``cls`` read from the JSON object ``d`` (at ``w``): one per
    field (or per name of ``names``, in that order): ``readers[name]`` where given, else the
    reader of the field's annotation (the JSON key is the field's name, or the reader's own)."""
    if not isinstance(d, dict):
        raise _Bad(f"{w or 'top level'}: must be an object")
    readers = readers or {}
    annotation = {f.name: str(f.type) for f in fields(cls)}
    return {n: (readers.get(n) or _BY_TYPE[annotation[n]])(d, n, w) for n in (annotation if names is None else names)}


def _positive_ints(d: dict, k: str, w: str) -> tuple[int, ...]:
    return _ints(_get(d, k, w, list), f"{w}{k}", 1)


def _input_size(d: dict, k: str, w: str) -> tuple[int, ...] | None:
    size = _get(d, k, w, list, optional=True)
    return _ints(size, f"{w}{k}", 1) if size is not None else None


def _random_init(m: dict, k: str = "random_init", w: str = "model.") -> bool:
    """``model.random_init`` (written only when true); files of entropyflow 0.1.0 lack it and say
    so only in ``model.weights``, which reads "random init (torch.manual_seed(N))" there."""
    flag = _get(m, k, w, bool, optional=True)
    if flag is not None:
        return flag
    return bool(re.fullmatch(r"random init \(torch\.manual_seed\(\d+\)\)", m["weights"]))


_MODEL_FIELDS: dict[str, _Reader] = {"input_size": _input_size, "random_init": _random_init}
_SKIPPED_FIELDS: dict[str, _Reader] = {"module_type": lambda d, _k, w: _get(d, "type", w, str)}
_CONV_FIELDS: dict[str, _Reader] = {
    **{k: _positive_ints for k in ("in_size", "out_size", "kernel", "stride", "dilation")},
    "groups": lambda d, k, w: _get(d, k, w, int, optional=True) or 1,
}


def _geometry(item: dict, k: str, w: str) -> ConvGeometry | DenseGeometry | None:
    g = _get(item, k, w, dict, optional=True)
    if g is None:
        return None
    gw = f"{w}{k}."
    t = _get(g, "type", gw, str)
    if t == "conv":
        return ConvGeometry(**_fields(ConvGeometry, g, gw, _CONV_FIELDS))
    if t == "dense":
        return DenseGeometry(**_fields(DenseGeometry, g, gw))
    raise _Bad(f"{gw}type: {printable(t, 20)!r} is not conv or dense")


def _rows(item: dict, k: str, w: str) -> tuple[int, int] | None:
    raw = _get(item, k, w, list, optional=True)
    if raw is None:
        return None
    first, end = _ints(raw, f"{w}{k}")
    if first >= end:
        raise _Bad(f"{w}{k}: must be [first, end) with first < end")
    return first, end


def _kind(item: dict, k: str, w: str) -> str:
    kind = _get(item, k, w, str)
    if not is_layer_kind(kind):
        raise _Bad(f"{w}{k}: {printable(kind, 40)!r} is not a layer kind entropyflow writes")
    return kind


def _exact(item: dict, k: str, w: str) -> bool | None:
    exact = item.get(k)
    if exact is not None and not isinstance(exact, bool):
        raise _Bad(f"{w}{k}: must be true, false or null ({shown(exact, 20)})")
    return exact


def _per_filter(key: str, *, optional: bool = False, finite_or_neginf: bool = False) -> _Reader:
    """A reader of ``per_filter.<key>`` (a field of LayerResult kept under ``per_filter``)."""

    def read(item: dict, _k: str, w: str) -> np.ndarray | None:
        pf = _get(item, "per_filter", w, dict)
        raw = _get(pf, key, f"{w}per_filter.", list, optional=optional)
        return None if raw is None else _values(raw, f"{w}per_filter.{key}", finite_or_neginf=finite_or_neginf)

    return read


_LAYER_FIELDS: dict[str, _Reader] = {
    "kind": _kind,
    "geometry": _geometry,
    "c11": _per_filter("c11"),
    "per_position": _per_filter("dh_per_position", finite_or_neginf=True),
    "totals": _per_filter("dh_total", optional=True),
    "exact": _exact,
    "summary": lambda d, k, w: Summary(**_fields(Summary, _get(d, k, w, dict), f"{w}{k}.")),
    "rows": _rows,
    "transposed": lambda d, k, w: bool(_get(d, k, w, bool, optional=True)),
}


#: the fields of a layer checked first, in this order (a document with several problems is
#: refused for the same one as by earlier versions), then the rest in field order
_LAYER_FIRST = ("kind", "weight_shape", "geometry", "per_position", "totals", "c11")
_LAYER_NEXT = ("summary", "exact", "square")


def _layer(item: object, w: str) -> LayerResult:
    kw = _fields(LayerResult, item, w, _LAYER_FIELDS, _LAYER_FIRST)
    if kw["totals"] is not None and kw["totals"].size != kw["per_position"].size:
        raise _Bad(f"{w}per_filter: dh_total and dh_per_position differ in length")
    rest = [f.name for f in fields(LayerResult) if f.name not in kw and f.name not in _LAYER_NEXT]
    kw |= _fields(LayerResult, item, w, _LAYER_FIELDS, [*_LAYER_NEXT, *rest])
    return LayerResult(**kw)
