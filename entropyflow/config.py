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
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import yaml

from . import strictjson
from .errors import ConfigError, InputNotFoundError, OutputError
from .text import brief, printable, shown
from .vocab import CHANNEL_RULES, ESTIMATORS, LAYER_KINDS_TEXT, LOSS_FORMS, is_layer_kind


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
        return self.kind.startswith("conv")


@dataclass(frozen=True)
class Strategy:
    name: str
    params: tuple[tuple[str, object], ...]
    rationale: str


@dataclass(frozen=True)
class LambdaConfig:
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


def to_dict(cfg: LambdaConfig) -> dict:
    layers = []
    for layer in cfg.layers:
        d = {
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


def _need(d: Mapping, key: str, path: str):
    if key not in d:
        raise ConfigError(f"{path}{key}: missing")
    return d[key]


def _number(v, path: str, *, positive: bool = False, bound: tuple[float, float] | None = None) -> float:
    """A finite float; ``bound``: (lo, hi) for ``positive``, else ``|v| ≤ hi``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{path}: not a number ({_show(v)})")
    try:
        v = float(v)
    except OverflowError:  # an int beyond a double
        v = math.inf
    if not math.isfinite(v):
        raise ConfigError(f"{path}: must be finite ({brief(v, 30)})")
    if positive and v <= 0:
        raise ConfigError(f"{path}: must be > 0 ({v})")
    if bound is not None and not (bound[0] <= v <= bound[1] if positive else abs(v) <= bound[1]):
        want = f"between {bound[0]:g} and {bound[1]:g}" if positive else f"at most {bound[1]:g} in magnitude"
        raise ConfigError(f"{path}: must be {want} ({v:g})")
    return v


_LAMBDA_BOUND = (0.0, MAX_LAMBDA)


def _text(v, path: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{path}: must be a non-empty string ({_show(v)})")
    return v


def _ints(v, path: str, n: int | None = None) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or any(
        isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= MAX_INT for x in v
    ):
        raise ConfigError(f"{path}: must be a list of non-negative integers ({_show(v)})")
    if n is not None and len(v) != n:
        raise ConfigError(f"{path}: must have {n} entries ({_show(v)})")
    return tuple(v)


def _known(d: Mapping, fields: tuple[str, ...], path: str) -> None:
    for key in d:
        if key not in fields:
            shown = printable(key, 60) if isinstance(key, str) else brief(key, 40)
            raise ConfigError(f"{path}{shown}: unknown field (expected {', '.join(fields)})")


def is_no_best(d) -> bool:
    """A sweep's ``best.yaml`` when no cell beat the baseline: ``best: null`` and its ``reason``."""
    return isinstance(d, Mapping) and "best" in d and d["best"] is None and set(d) <= {"best", "reason"}


def from_dict(d) -> LambdaConfig:
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
    _known(d, TOP_FIELDS, "")
    version = _need(d, "schema_version", "")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ConfigError(f"schema_version: {_show(version)} is not supported (expected {SCHEMA_VERSION})")
    loss = _need(d, "loss", "")
    if not isinstance(loss, Mapping):
        raise ConfigError("loss: must be a mapping with form and epsilon")
    _known(loss, ("form", "epsilon"), "loss.")
    form = _need(loss, "form", "loss.")
    if not isinstance(form, str) or form not in LOSS_FORMS:
        raise ConfigError(f"loss.form: {_show(form)} is not one of {', '.join(LOSS_FORMS)}")
    eps = _number(_need(loss, "epsilon", "loss."), "loss.epsilon", positive=True, bound=EPSILON_RANGE)
    rule = _need(d, "channel_rule", "")
    if not isinstance(rule, str) or rule not in CHANNEL_RULES:
        raise ConfigError(f"channel_rule: {_show(rule)} is not one of {', '.join(CHANNEL_RULES)}")
    fp = d.get("fingerprint") or {}
    if not isinstance(fp, Mapping):
        raise ConfigError("fingerprint: must be a mapping with sha256_16 and layers")
    _known(fp, ("sha256_16", "layers"), "fingerprint.")
    if not isinstance(fp.get("sha256_16", ""), str) or not re.fullmatch(r"[0-9a-f]{16}|", fp.get("sha256_16", "")):
        raise ConfigError(f"fingerprint.sha256_16: must be 16 hex digits ({_show(fp.get('sha256_16'))})")
    fp_layers = fp.get("layers", 0)
    if isinstance(fp_layers, bool) or not isinstance(fp_layers, int) or not 0 <= fp_layers <= MAX_INT:
        raise ConfigError(f"fingerprint.layers: must be a non-negative integer ({_show(fp_layers)})")
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
    strategy = Strategy(_text(_need(st, "name", "strategy."), "strategy.name"), tuple(params.items()), rationale)
    estimator = d.get("estimator", "paper")
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ConfigError(f"estimator: {_show(estimator)} is not one of {', '.join(ESTIMATORS)}")
    raw_layers = _need(d, "layers", "")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ConfigError("layers: must be a non-empty list")
    if len(raw_layers) > MAX_CONFIG_LAYERS:
        raise ConfigError(f"layers: more than {MAX_CONFIG_LAYERS:,} layers ({len(raw_layers):,}): not a λ config")
    layers = []
    seen: set[str] = set()
    weights: dict[str, list[tuple[int, tuple[int, int] | None, int | None]]] = {}
    for i, layer in enumerate(raw_layers):
        p = f"layers[{i}]"
        if not isinstance(layer, Mapping):
            raise ConfigError(f"{p}: must be a mapping")
        _known(layer, LAYER_FIELDS, p + ".")
        shape = _ints(_need(layer, "weight_shape", p + "."), f"{p}.weight_shape")
        fl = layer.get("filter_lambdas")
        if fl is not None:
            if not isinstance(fl, list):
                raise ConfigError(f"{p}.filter_lambdas: must be a list of numbers")
            fl = tuple(_number(x, f"{p}.filter_lambdas[{j}]", bound=_LAMBDA_BOUND) for j, x in enumerate(fl))
        kind = _text(_need(layer, "kind", p + "."), f"{p}.kind")
        if not is_layer_kind(kind):
            raise ConfigError(f"{p}.kind: {_show(kind)} is not {LAYER_KINDS_TEXT}")
        dims = int(kind[-2]) + 2 if kind.startswith("conv") else 2
        if len(shape) != dims:
            raise ConfigError(f"{p}.weight_shape: a {kind} weight has {dims} dimensions ({list(shape)})")
        if fl is not None and (not kind.startswith("conv") or len(fl) != shape[0]):
            raise ConfigError(
                f"{p}.filter_lambdas: needs a conv layer and one value per filter ({shape[0] if shape else 0})"
            )
        rows: tuple[int, int] | None = None
        if layer.get("rows") is not None:
            first, end = _ints(layer["rows"], f"{p}.rows", 2)
            if first >= end:
                raise ConfigError(f"{p}.rows: must be [first, end) with first < end ({[first, end]})")
            rows = (first, end)
        period = layer.get("row_period")
        if period is not None and (
            isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= MAX_INT or rows is None
        ):
            raise ConfigError(f"{p}.row_period: a positive integer, with rows")
        transposed = layer.get("transposed", False)
        if not isinstance(transposed, bool):
            raise ConfigError(f"{p}.transposed: must be true or false")
        name = _text(_need(layer, "name", p + "."), f"{p}.name")
        if name in seen:
            raise ConfigError(f"{p}.name: {_show(name)} is listed twice")
        seen.add(name)
        key = _text(_need(layer, "weight_key", p + "."), f"{p}.weight_key")
        weights.setdefault(key, []).append((i, rows, period))
        layers.append(
            LayerLambda(
                name=name,
                kind=kind,
                weight_key=key,
                weight_shape=shape,
                lam=_number(_need(layer, "lambda", p + "."), f"{p}.lambda", bound=_LAMBDA_BOUND),
                filter_lambdas=fl,
                rows=rows,
                row_period=period,
                transposed=transposed,
            )
        )
    _each_weight_once(weights)
    prov = d.get("provenance") or {}
    if not isinstance(prov, Mapping) or not all(isinstance(k, str) and _scalar(v) for k, v in prov.items()):
        raise ConfigError("provenance: must be a mapping of names to strings or numbers")
    warnings = d.get("warnings") or []
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise ConfigError(f"warnings: must be a list of strings ({_show(warnings)})")
    model = d.get("model", "")
    if not isinstance(model, str):
        raise ConfigError(f"model: must be a string ({_show(model)})")
    return LambdaConfig(
        model=model,
        fingerprint=fp.get("sha256_16", ""),
        estimator=estimator,
        channel_rule=rule,
        form=form,
        epsilon=eps,
        strategy=strategy,
        layers=tuple(layers),
        provenance=tuple(prov.items()),
        warnings=tuple(warnings),
        fingerprint_layers=fp_layers,
    )


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

    def short_lists(dumper, data):  # shapes and rows on one line: [16, 1, 3, 3]
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


def _umask() -> int:
    """The process umask, without changing it where /proc tells (os.umask can only be read by setting it)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_config_path(path: str | Path) -> Path:
    """The path a config will be written to, if it can be: a .yaml/.yml/.json name in a writable
    folder, not a folder or link, and not an existing file that entropyflow did not write."""
    if str(path).strip() == "":
        raise OutputError("the config file name is empty (give one, e.g. -o lambda.yaml)")
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
    text = dumps(cfg, _is_json(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".entropyflow-", suffix=path.suffix, dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; a config is an ordinary file
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"cannot write {printable(path)}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
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


class _StrictYAML(_YAML_BASE):
    """Safe YAML without what JSON is refused for: duplicate mapping keys, integers of more than
    strictjson.MAX_INT_DIGITS digits."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
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
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        digits = len(str(node.value).lstrip("+-").replace("_", ""))
        if digits > strictjson.MAX_INT_DIGITS:
            raise ConfigError(
                f"line {node.start_mark.line + 1}: an integer with {digits} digits "
                f"(at most {strictjson.MAX_INT_DIGITS})"
            )
        return super().construct_yaml_int(node)


_StrictYAML.add_constructor("tag:yaml.org,2002:int", _StrictYAML.construct_yaml_int)
_StrictYAML.add_constructor("tag:yaml.org,2002:map", _StrictYAML.construct_yaml_map)


def _parse(path: Path, text: str):
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


def load_config(source: str | Path | Mapping) -> LambdaConfig:
    """Read and validate a config file (YAML or JSON by extension) or an already parsed mapping."""
    if isinstance(source, Mapping):
        return from_dict(source)
    return from_dict(_read(source))


def load_best(source: str | Path | Mapping) -> LambdaConfig | None:
    """A sweep's ``best.yaml`` as what it is: the winning cell's λ config, or None where it says
    ``best: null`` (no cell beat the baseline)."""
    doc = source if isinstance(source, Mapping) else _read(source)
    return None if is_no_best(doc) else from_dict(doc)


def _read(source: str | Path):
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


# --- what a loss form can do --------------------------------------------------------------------


def dense_inverse_is_inert(logabsdet: float, eps: float, factor: float = 1e-6) -> bool:
    """Whether eq. 24 is numerically inert (see :func:`dense_inverse_inertness`)."""
    return dense_inverse_inertness(logabsdet, eps, factor) is not None


def dense_inverse_inertness(logabsdet: float, eps: float, factor: float = 1e-6) -> str | None:
    """Why eq. 24, ``λ/(|det W|+ε)``, cannot act on a layer with this ``log|det|``, or None.

    Its gradient is ``−λ·|det|/(|det|+ε)²·W⁻ᵀ``, the log form's ``−λ·W⁻ᵀ`` times ``|det|/(|det|+ε)²``:
    * ``|det| < factor·ε`` (every realistic layer: a 4096² layer has ``log|det| ≈ −3900``): the
      factor is below ``factor/ε``, the value sits at ``λ/ε``;
    * ``|det| > 1/factor`` (``log|det| > 13.8``): the factor is about ``1/|det|`` < ``factor``, the
      value is ``≈ 0``, and the term does nothing either."""
    if logabsdet < math.log(eps) + math.log(factor):
        return (
            f"|det W| underflows against ε (log|det| = {logabsdet:.1f}): the value is λ/ε and the gradient "
            f"below {factor:g}/ε of the log form's"
        )
    if logabsdet > -math.log(factor):
        return (
            f"|det W| is huge (log|det| = {logabsdet:.1f}): the value is ≈ 0 and the gradient about 1/|det| "
            f"(< {factor:g}) of the log form's"
        )
    return None
