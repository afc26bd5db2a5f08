"""The λ placement config, the interface between ``recommend`` (which writes it) and ``regularize``
(which applies it): frozen dataclasses, validation with field-named errors, YAML/JSON I/O.

Documented in docs/config.md. Files are written atomically, keys in a fixed order, so the same
recommendation gives the same bytes except for ``provenance.created``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import yaml

from . import strictjson
from .atomic import write_atomic
from .errors import ConfigError, InputNotFoundError, OutputError
from .text import brief, printable, shown
from .vocab import CHANNEL_RULES, ESTIMATORS, LAYER_KINDS_TEXT, LOSS_FORMS, is_conv_kind, is_layer_kind
from .words import say

Doc = Mapping[Any, Any]  # a parsed YAML/JSON mapping (its keys may be any scalar)


def _show(v: object) -> str:
    """A config value in an error message: bounded, control characters escaped, strings quoted."""
    return shown(v, 60)


SCHEMA_VERSION = 1
MAX_LAMBDA = 1e6  # |λ| (and λ/ε stays finite in float32 over a million filters)
EPSILON_RANGE = (1e-12, 1e6)
MAX_CONFIG_LAYERS = 100_000
MAX_INT = 1 << 62  # shapes, rows, counts: anything larger is not a tensor dimension
TOP_FIELDS = (
    "schema_version",
    "model",
    "fingerprint",
    "estimator",
    "channel_rule",
    "loss",
    "strategy",
    "layers",
    "warnings",
    "provenance",
)
LAYER_FIELDS = (
    "name", "kind", "weight_key", "weight_shape", "lambda", "filter_lambdas", "rows", "row_period", "transposed",
)  # fmt: skip


@dataclass(frozen=True)
class LayerLambda:
    """One regularised layer: where its weight is, and its λ (per filter optionally)."""

    name: str
    kind: str
    weight_key: str
    weight_shape: tuple[int, ...]
    lam: float
    filter_lambdas: tuple[float, ...] | None = None
    rows: tuple[int, int] | None = None  # a row block of the weight's map (q/k/v of a fused projection)
    row_period: int | None = None  # the block repeats every this many rows (per-head interleaved layouts)
    transposed: bool = False  # the weight is stored (in, out) (transformers' Conv1D): the map is its transpose

    @property
    def is_conv(self) -> bool:
        return is_conv_kind(self.kind)


@dataclass(frozen=True)
class Strategy:
    """How a config's layers were chosen: the strategy's name, its parameters and why (the paper's finding)."""

    name: str
    params: tuple[tuple[str, object], ...]
    rationale: str


@dataclass(frozen=True)
class LambdaConfig:
    """A λ placement config (docs/config.md): which layers get the entropy loss, with which λ and form."""

    model: str
    fingerprint: str
    estimator: str
    channel_rule: str
    form: str
    epsilon: float
    strategy: Strategy
    layers: tuple[LayerLambda, ...]
    provenance: tuple[tuple[str, object], ...] = ()
    warnings: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION
    fingerprint_layers: int = 0


def fingerprint(entries: Iterable[tuple[str, Iterable[int]]]) -> tuple[str, int]:
    """sha256 (first 16 hex digits) of the sorted ``(weight key, shape)`` pairs, and their count."""
    items = sorted({(k, tuple(int(d) for d in s)) for k, s in entries})
    text = "\n".join(f"{k}:{'x'.join(map(str, s))}" for k, s in items)
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()[:16], len(items)


# --- dict form -----------------------------------------------------------------------------------


def to_dict(cfg: LambdaConfig) -> dict[str, Any]:
    layers = []
    for layer in cfg.layers:
        d: dict[str, Any] = {
            "name": layer.name,
            "kind": layer.kind,
            "weight_key": layer.weight_key,
            "weight_shape": list(layer.weight_shape),
            "lambda": layer.lam,
        }
        if layer.rows is not None:
            d["rows"] = list(layer.rows)
        if layer.row_period is not None:
            d["row_period"] = layer.row_period
        if layer.transposed:
            d["transposed"] = True
        if layer.filter_lambdas is not None:
            d["filter_lambdas"] = list(layer.filter_lambdas)
        layers.append(d)
    return {
        "schema_version": cfg.schema_version,
        "model": cfg.model,
        "fingerprint": {"sha256_16": cfg.fingerprint, "layers": cfg.fingerprint_layers},
        "estimator": cfg.estimator,
        "channel_rule": cfg.channel_rule,
        "loss": {"form": cfg.form, "epsilon": cfg.epsilon},
        "strategy": {
            "name": cfg.strategy.name,
            "params": dict(cfg.strategy.params),
            "rationale": cfg.strategy.rationale,
        },
        "layers": layers,
        "warnings": list(cfg.warnings),
        "provenance": dict(cfg.provenance),
    }


def _need(d: Doc, key: str, path: str) -> Any:
    if key not in d:
        raise ConfigError(f"{path}{key}: missing")
    return d[key]


def _number(v: object, path: str, *, positive: bool = False, bound: tuple[float, float] | None = None) -> float:
    """A finite float; ``bound``: (lo, hi) for ``positive``, else ``|v| ≤ hi``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{path}: not a number ({_show(v)})")
    try:
        x = float(v)
    except OverflowError:  # an int beyond a double
        x = math.inf
    if not math.isfinite(x):
        raise ConfigError(f"{path}: must be finite ({brief(x, 30)})")
    if positive and x <= 0:
        raise ConfigError(f"{path}: must be > 0 ({x})")
    if bound is not None and not (bound[0] <= x <= bound[1] if positive else abs(x) <= bound[1]):
        want = f"between {bound[0]:g} and {bound[1]:g}" if positive else f"at most {bound[1]:g} in magnitude"
        raise ConfigError(f"{path}: must be {want} ({x:g})")
    return x


_LAMBDA_BOUND = (0.0, MAX_LAMBDA)


def _text(v: object, path: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{path}: must be a non-empty string ({_show(v)})")
    return v


def _ints(v: object, path: str, n: int | None = None) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or any(
        isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= MAX_INT for x in v
    ):
        raise ConfigError(f"{path}: must be a list of non-negative integers ({_show(v)})")
    if n is not None and len(v) != n:
        raise ConfigError(f"{path}: must have {n} entries ({_show(v)})")
    return tuple(v)


def _known(d: Doc, fields: tuple[str, ...], path: str) -> None:
    for key in d:
        if key not in fields:
            shown = printable(key, 60) if isinstance(key, str) else brief(key, 40)
            raise ConfigError(f"{path}{shown}: unknown field (expected {', '.join(fields)})")


def is_no_best(d: object) -> bool:
    """A sweep's ``best.yaml`` when no cell beat the baseline: ``best: null`` and its ``reason``."""
    return isinstance(d, Mapping) and "best" in d and d["best"] is None and set(d) <= {"best", "reason"}


def from_dict(d: object) -> LambdaConfig:
    """Validate a parsed config; every error names the offending field."""
    if not isinstance(d, Mapping):
        raise ConfigError("config: the top level must be a mapping")
    if is_no_best(d):
        reason = d.get("reason")
        why = f": {printable(reason, 200)}" if isinstance(reason, str) and reason else ""
        raise ConfigError(
            f"this is a sweep's best.yaml with no winning cell (best: null{why}), so there is no λ config to use: "
            "train without the term, or give the config of one of the sweep's cells"
        )
    if "rule" in d and "schema_version" not in d:
        raise ConfigError(
            f"this is a sweep's placement rule ({printable(brief(d.get('rule'), 40), 40)}, resolved on the live "
            "model), not a λ config: build the term with entropyflow.sweep.regularizer(model, config), given the "
            "trial's whole config, in the training function, which resolves the rule and records the layers it chose"
        )
    _known(d, TOP_FIELDS, "")
    version = _need(d, "schema_version", "")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ConfigError(f"schema_version: {_show(version)} is not supported (expected {SCHEMA_VERSION})")
    return LambdaConfig(**{name: read(d) for name, read in _CONFIG_FIELDS.items()})


# One reader per field of LambdaConfig (schema_version aside), in the order they are checked: each
# takes the whole mapping and returns the field's value, or raises a ConfigError naming the key.


def _loss(d: Doc) -> Doc:
    loss = _need(d, "loss", "")
    if not isinstance(loss, Mapping):
        raise ConfigError("loss: must be a mapping with form and epsilon")
    _known(loss, ("form", "epsilon"), "loss.")
    return loss


def _form(d: Doc) -> str:
    form = _need(_loss(d), "form", "loss.")
    if not isinstance(form, str) or form not in LOSS_FORMS:
        raise ConfigError(f"loss.form: {_show(form)} is not one of {', '.join(LOSS_FORMS)}")
    return form


def _epsilon(d: Doc) -> float:
    return _number(_need(_loss(d), "epsilon", "loss."), "loss.epsilon", positive=True, bound=EPSILON_RANGE)


def _one_of(d: Doc, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    v = _need(d, key, "") if default is None else d.get(key, default)
    if not isinstance(v, str) or v not in allowed:
        raise ConfigError(f"{key}: {_show(v)} is not one of {', '.join(allowed)}")
    return v


def _fingerprint_block(d: Doc) -> Doc:
    fp = d.get("fingerprint") or {}
    if not isinstance(fp, Mapping):
        raise ConfigError("fingerprint: must be a mapping with sha256_16 and layers")
    _known(fp, ("sha256_16", "layers"), "fingerprint.")
    return fp


def _fingerprint(d: Doc) -> str:
    sha = _fingerprint_block(d).get("sha256_16", "")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{16}|", sha):
        raise ConfigError(f"fingerprint.sha256_16: must be 16 hex digits ({_show(sha)})")
    return sha


def _fingerprint_layers(d: Doc) -> int:
    n = _fingerprint_block(d).get("layers", 0)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_INT:
        raise ConfigError(f"fingerprint.layers: must be a non-negative integer ({_show(n)})")
    return n


def _strategy(d: Doc) -> Strategy:
    st = _need(d, "strategy", "")
    if not isinstance(st, Mapping):
        raise ConfigError("strategy: must be a mapping with name, params and rationale")
    _known(st, ("name", "params", "rationale"), "strategy.")
    params = st.get("params") or {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) and _scalar(v) for k, v in params.items()):
        raise ConfigError("strategy.params: must be a mapping of names to numbers or strings")
    rationale = st.get("rationale", "")
    if not isinstance(rationale, str):
        raise ConfigError(f"strategy.rationale: must be a string ({_show(rationale)})")
    return Strategy(
        name=_text(_need(st, "name", "strategy."), "strategy.name"), params=tuple(params.items()), rationale=rationale
    )


def _layers(d: Doc) -> tuple[LayerLambda, ...]:
    raw = _need(d, "layers", "")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("layers: must be a non-empty list")
    if len(raw) > MAX_CONFIG_LAYERS:
        raise ConfigError(f"layers: more than {MAX_CONFIG_LAYERS:,} layers ({len(raw):,}): not a λ config")
    layers = tuple(_layer(layer, f"layers[{i}]") for i, layer in enumerate(raw))
    seen: set[str] = set()
    for i, layer in enumerate(layers):
        if layer.name in seen:
            raise ConfigError(f"layers[{i}].name: {_show(layer.name)} is listed twice")
        seen.add(layer.name)
    weights: dict[str, list[tuple[int, tuple[int, int] | None, int | None]]] = {}
    for i, layer in enumerate(layers):
        weights.setdefault(layer.weight_key, []).append((i, layer.rows, layer.row_period))
    _each_weight_once(weights)
    return layers


def _provenance(d: Doc) -> tuple[tuple[str, object], ...]:
    prov = d.get("provenance") or {}
    if not isinstance(prov, Mapping) or not all(isinstance(k, str) and _scalar(v) for k, v in prov.items()):
        raise ConfigError("provenance: must be a mapping of names to strings or numbers")
    return tuple(prov.items())


def _warnings(d: Doc) -> tuple[str, ...]:
    warnings = d.get("warnings") or []
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise ConfigError(f"warnings: must be a list of strings ({_show(warnings)})")
    return tuple(warnings)


def _model(d: Doc) -> str:
    model = d.get("model", "")
    if not isinstance(model, str):
        raise ConfigError(f"model: must be a string ({_show(model)})")
    return model


_CONFIG_FIELDS: dict[str, Callable[[Doc], Any]] = {
    "form": _form,
    "epsilon": _epsilon,
    "channel_rule": lambda d: _one_of(d, "channel_rule", CHANNEL_RULES),
    "fingerprint": _fingerprint,
    "fingerprint_layers": _fingerprint_layers,
    "strategy": _strategy,
    "estimator": lambda d: _one_of(d, "estimator", ESTIMATORS, default="paper"),
    "layers": _layers,
    "provenance": _provenance,
    "warnings": _warnings,
    "model": _model,
}


# One reader per field of LayerLambda, in the order they are checked: each takes the layer's
# mapping, its path (``layers[i]``) and the fields read so far (a field may depend on them).

_Read = Callable[[Doc, str, dict[str, Any]], Any]


def _layer(layer: object, p: str) -> LayerLambda:
    if not isinstance(layer, Mapping):
        raise ConfigError(f"{p}: must be a mapping")
    _known(layer, LAYER_FIELDS, p + ".")
    got: dict[str, Any] = {}
    for name, read in _LAYER_FIELDS.items():
        got[name] = read(layer, p, got)
    return LayerLambda(**got)


def _filter_lambdas(layer: Doc, p: str, _got: dict[str, Any]) -> tuple[float, ...] | None:
    fl = layer.get("filter_lambdas")
    if fl is None:
        return None
    if not isinstance(fl, list):
        raise ConfigError(f"{p}.filter_lambdas: must be a list of numbers")
    return tuple(_number(x, f"{p}.filter_lambdas[{j}]", bound=_LAMBDA_BOUND) for j, x in enumerate(fl))


def _kind(layer: Doc, p: str, got: dict[str, Any]) -> str:
    """The kind, and what it says of the weight's shape and of filter_lambdas (read before it)."""
    kind = _text(_need(layer, "kind", p + "."), f"{p}.kind")
    if not is_layer_kind(kind):
        raise ConfigError(f"{p}.kind: {_show(kind)} is not {LAYER_KINDS_TEXT}")
    shape, fl = got["weight_shape"], got["filter_lambdas"]
    dims = int(kind[-2]) + 2 if kind.startswith("conv") else 2
    if len(shape) != dims:
        raise ConfigError(f"{p}.weight_shape: a {kind} weight has {dims} dimensions ({list(shape)})")
    if fl is not None and (not kind.startswith("conv") or len(fl) != shape[0]):
        raise ConfigError(
            f"{p}.filter_lambdas: needs a conv layer and one value per filter ({shape[0] if shape else 0})"
        )
    return kind


def _rows(layer: Doc, p: str, _got: dict[str, Any]) -> tuple[int, int] | None:
    if layer.get("rows") is None:
        return None
    first, end = _ints(layer["rows"], f"{p}.rows", 2)
    if first >= end:
        raise ConfigError(f"{p}.rows: must be [first, end) with first < end ({[first, end]})")
    return first, end


def _row_period(layer: Doc, p: str, got: dict[str, Any]) -> int | None:
    period = layer.get("row_period")
    if period is not None and (
        isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= MAX_INT or got["rows"] is None
    ):
        raise ConfigError(f"{p}.row_period: a positive integer, with rows")
    return period


def _transposed(layer: Doc, p: str, _got: dict[str, Any]) -> bool:
    transposed = layer.get("transposed", False)
    if not isinstance(transposed, bool):
        raise ConfigError(f"{p}.transposed: must be true or false")
    return transposed


def _layer_text(key: str) -> _Read:
    return lambda layer, p, _got: _text(_need(layer, key, p + "."), f"{p}.{key}")


_LAYER_FIELDS: dict[str, _Read] = {
    "weight_shape": lambda layer, p, _got: _ints(_need(layer, "weight_shape", p + "."), f"{p}.weight_shape"),
    "filter_lambdas": _filter_lambdas,
    "kind": _kind,
    "rows": _rows,
    "row_period": _row_period,
    "transposed": _transposed,
    "name": _layer_text("name"),
    "weight_key": _layer_text("weight_key"),
    "lam": lambda layer, p, _got: _number(_need(layer, "lambda", p + "."), f"{p}.lambda", bound=_LAMBDA_BOUND),
}


def _each_weight_once(weights: dict[str, list[tuple[int, tuple[int, int] | None, int | None]]]) -> None:
    """A weight (or a block of its rows) is regularised by one entry only: a second entry naming it
    would apply λ twice. Row blocks of one fused weight (q, k, v) must not overlap (n log n)."""
    for key, entries in weights.items():
        if len(entries) == 1:
            continue
        blocks = sorted(entries, key=lambda e: (e[1] or (0, 0), e[0]))
        for (j, a, pa), (i, b, pb) in pairwise(blocks):
            if a is None or b is None or pa != pb or b[0] < a[1]:
                i, j = max(i, j), min(i, j)
                raise ConfigError(
                    f"layers[{i}].weight_key: {_show(key)} is already regularised by layers[{j}] (its λ would "
                    "count twice); list each weight once"
                )


def _scalar(v: object) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


# --- files ---------------------------------------------------------------------------------------


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def dumps(cfg: LambdaConfig, json_format: bool = False) -> str:
    d = to_dict(cfg)
    if json_format:
        return json.dumps(d, indent=2) + "\n"

    class Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]  # libyaml: same bytes, 3× faster
        def ignore_aliases(self, data: object) -> bool:  # configs are read back without aliases
            return True

    def short_lists(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.SequenceNode:
        # shapes and rows on one line: [16, 1, 3, 3]
        flow = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data) and len(data) <= 8
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Dumper.add_representer(list, short_lists)
    body = yaml.dump(d, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)
    return CONFIG_HEADER + body


CONFIG_HEADER = "# entropyflow λ placement config (docs/config.md)\n"
MAX_CONFIG_BYTES = 16 << 20  # a 100,000-layer config is about 12 MiB


def _is_config_file(path: Path) -> bool:
    """Whether an existing file is a λ config (the only files entropyflow overwrites): it must read
    and validate completely as one, not merely mention its field names."""
    try:
        load_config(path)
    except (ConfigError, InputNotFoundError):
        return False
    return True


def check_config_path(path: str | Path) -> Path:
    """The path a config will be written to, if it can be: a .yaml/.yml/.json name in a writable
    folder, not a folder or link, and not an existing file that entropyflow did not write."""
    if str(path).strip() == "":
        raise OutputError(
            f"the config file name is empty (give one, e.g. {say(cli='-o lambda.yaml', library='lambda.yaml')})"
        )
    path = Path(path).expanduser()
    where = printable(path)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise OutputError(f"cannot write {where}: use a .yaml, .yml or .json file name")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise OutputError(f"cannot write {where}: {printable(folder)} is not a writable folder")
        if path.is_symlink() or path.is_dir():
            raise OutputError(f"cannot write {where}: it is a {'symbolic link' if path.is_symlink() else 'folder'}")
        if path.exists() and not _is_config_file(path):
            raise OutputError(
                f"cannot write {where}: the file exists and is not a λ config written by entropyflow "
                "(entropyflow never overwrites files it did not write): choose another name"
            )
        if len(os.fsencode(path.name)) + 24 > os.pathconf(folder, "PC_NAME_MAX"):
            raise OutputError(f"cannot write {where}: the file name is too long")
    except OSError as exc:
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from exc
    return path


def save_config(cfg: LambdaConfig, path: str | Path) -> Path:
    """Write YAML (``.yaml``/``.yml``) or JSON (``.json``) atomically (never a half-written file,
    no temporary file left behind even when interrupted)."""
    path = check_config_path(path)
    try:
        write_atomic(path, dumps(cfg, _is_json(path)).encode("utf-8"))
    except OSError as exc:
        raise OutputError(f"cannot write {printable(path)}: {exc.strerror or exc}") from exc
    return path


MAX_YAML_NODES = 1_000_000  # a config's YAML values (scalars, lists, mappings) after expanding aliases
_YAML_BASE: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present: 4× faster


def _yaml_size(text: str) -> None:
    """Count the document's values from the parser's event stream (linear, nothing built), aliases
    expanded, and refuse more than MAX_YAML_NODES before a node is composed: a few lines of nested
    aliases (the 'billion laughs') describe billions, a plain 17 MB file a few million."""
    count, aliases = 0, False
    sizes: dict[str, int] = {}
    open_: list[tuple[str | None, int, int]] = []  # (anchor, count at its start, line)
    open_anchors: set[str] = set()
    for event in yaml.parse(text, Loader=_YAML_BASE):
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                line = _line(event)
                raise ConfigError(f"line {line}: a YAML alias refers to the node that contains it")
            count += sizes.get(event.anchor or "", 1)  # an undefined alias: the composer names it
            aliases = True
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            count += 1
            if isinstance(event, yaml.CollectionStartEvent):
                open_.append((event.anchor, count - 1, _line(event)))
                if len(open_) > strictjson.MAX_DEPTH:
                    raise ConfigError(f"nested more than {strictjson.MAX_DEPTH} levels deep: not a λ config")
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
            elif event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start, line = open_.pop()
            if anchor is not None:
                sizes[anchor] = count - start
                open_anchors.discard(anchor)
            if aliases and count > MAX_YAML_NODES:
                raise ConfigError(
                    f"line {line}: YAML aliases expand this config past {MAX_YAML_NODES:,} values (an alias bomb?); "
                    "write the values out"
                )
        if count > MAX_YAML_NODES and not aliases:
            raise ConfigError(f"more than {MAX_YAML_NODES:,} values: not a λ config")


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 0


class _StrictYAML(_YAML_BASE):  # type: ignore[misc, unused-ignore]  # CSafeLoader or SafeLoader
    """Safe YAML without what JSON is refused for: duplicate mapping keys, integers of more than
    strictjson.MAX_INT_DIGITS digits."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=False)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise ConfigError(
                            f"line {key_node.start_mark.line + 1}: the key {_show(key)} appears twice in one mapping"
                        )
                    seen.add(key)
        return cast(dict[Any, Any], super().construct_mapping(node, deep))

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = len(str(node.value).lstrip("+-").replace("_", ""))
        if digits > strictjson.MAX_INT_DIGITS:
            raise ConfigError(
                f"line {node.start_mark.line + 1}: an integer with {digits} digits "
                f"(at most {strictjson.MAX_INT_DIGITS})"
            )
        return cast(int, super().construct_yaml_int(node))


_StrictYAML.add_constructor("tag:yaml.org,2002:int", _StrictYAML.construct_yaml_int)
_StrictYAML.add_constructor("tag:yaml.org,2002:map", _StrictYAML.construct_yaml_map)


def _parse(path: Path, text: str) -> object:
    where = printable(path.name)
    if _is_json(path):
        try:
            return strictjson.loads(text)
        except strictjson.JSONError as exc:
            raise ConfigError(f"{where} is not valid JSON: {printable(str(exc), 200)}") from exc
    try:
        _yaml_size(text)
        # yaml.load with a SafeLoader subclass (no tags that build objects); sizes checked above
        return yaml.load(text, Loader=_StrictYAML)  # noqa: S506
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{where} is nested too deeply to be a λ config") from exc
    except Exception as exc:  # noqa: BLE001 - yaml parse errors of any kind become one line
        raise ConfigError(f"{where} is not valid YAML: {printable(' '.join(str(exc).split()), 200)}") from exc


def load_config(source: str | Path | Doc) -> LambdaConfig:
    """Read and validate a config file (YAML or JSON by extension) or an already parsed mapping."""
    if isinstance(source, Mapping):
        return from_dict(source)
    return from_dict(_read(source))


def load_best(source: str | Path | Doc) -> LambdaConfig | None:
    """A sweep's ``best.yaml`` as what it is: the winning cell's λ config, or None where it says
    ``best: null`` (no cell beat the baseline)."""
    doc = source if isinstance(source, Mapping) else _read(source)
    return None if is_no_best(doc) else from_dict(doc)


def _read(source: str | Path) -> object:
    """A config file parsed (YAML or JSON by extension), within the size bound."""
    path = Path(source).expanduser()
    where = printable(path)
    try:
        if not path.is_file():
            raise InputNotFoundError(f"no such config file: {where}")
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{where} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a λ config")
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise InputNotFoundError(f"cannot read the config file {where}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a λ config")
    return _parse(path, raw.decode("utf-8", errors="replace"))
