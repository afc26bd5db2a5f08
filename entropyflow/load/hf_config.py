"""A Hugging Face ``config.json``, read strictly and checked before transformers sees it.

The file is untrusted input: it is parsed with :mod:`entropyflow.strictjson` (duplicate keys,
NaN, overflowing or 5000-digit numbers and deep nesting are refused), and the fields that decide
what runs and how much is built are checked here, in the raw document, so that transformers is
never asked to build what a small file can make unbounded:

* custom code (an ``auto_map`` or ``trust_remote_code``) anywhere in the tree, sub-configs
  included, is refused without ``--trust-code``;
* ``architectures`` is a list of class names, ``model_type`` a name;
* a declared count of layers (``num_hidden_layers``, ``n_layer``, ``depths``, …) is at most the
  number of tensors in the checkpoint (every layer has weights), or :data:`MAX_RANDOM_LAYERS`
  with ``--random-init``;
* per-axis sizes (``image_size``, ``patch_size``) are whole numbers within ``--input-size``'s
  bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import strictjson
from ..errors import CheckpointFormatError, UntrustedCodeError
from ..spec import MAX_INPUT_AXIS
from ..text import printable, shown
from ..words import arg

__all__ = ["MAX_CONFIG_BYTES", "MAX_RANDOM_LAYERS", "read_config", "check_config"]

MAX_CONFIG_BYTES = 4 << 20
MAX_RANDOM_LAYERS = 1024  # with no weights to compare with: real models have at most a few hundred
LAYER_KEYS = frozenset(
    {
        "num_hidden_layers", "n_layer", "n_layers", "num_layers", "num_decoder_layers", "num_encoder_layers",
        "encoder_layers", "decoder_layers", "depths", "num_hidden_groups",
    }
)  # fmt: skip
AXIS_KEYS = frozenset({"image_size", "patch_size"})
CODE_KEYS = ("auto_map", "trust_remote_code")


def read_config(folder: Path) -> dict[str, Any]:
    """``folder/config.json`` as a dict, parsed strictly; anything else is a one-line error."""
    path = folder / "config.json"
    try:
        doc = strictjson.read(path, max_bytes=MAX_CONFIG_BYTES)
    except (OSError, strictjson.JSONError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CheckpointFormatError(f"cannot read {printable(path)}: {printable(reason, 120)}") from exc
    if not isinstance(doc, dict):
        raise CheckpointFormatError(f"{printable(path)} is not a JSON object")
    return doc


def _nodes(doc: Any, where: str = "") -> list[tuple[str, str, Any]]:
    """Every (path of the object, key, value) in the tree, iteratively (depth is bounded by strictjson)."""
    out: list[tuple[str, str, Any]] = []
    stack: list[tuple[str, Any]] = [(where, doc)]
    while stack:
        at, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            name = f"{at}[{key}]" if isinstance(key, int) else f"{at}.{key}" if at else str(key)
            if isinstance(key, str):
                out.append((at, key, value))
            if isinstance(value, (dict, list)):
                stack.append((name, value))
    return out


def _count(value: Any) -> int | None:
    """A layer count: a whole number, or a list of them (``depths``, per stage); None when absent."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return sum(value)
    raise ValueError


def _axis_ok(value: Any) -> bool:
    sizes = value if isinstance(value, list) and 0 < len(value) <= 3 else [value]
    return all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_INPUT_AXIS for v in sizes)


def check_config(raw: dict[str, Any], path: Path, trust_code: bool, tensors: int | None) -> None:
    """Refuse what must not reach transformers (see the module's docstring). ``tensors``: how many
    tensors the checkpoint holds (None: no weights, ``--random-init``)."""
    name = printable(path)
    nodes = _nodes(raw)
    code = [f"{at}.{key}" if at else key for at, key, value in nodes if key in CODE_KEYS and value]
    if code and not trust_code:
        raise UntrustedCodeError(
            f"{name} names custom model code ({printable(code[0], 60)}): building it runs the repository's Python; "
            f"pass {arg('trust-code')} if you trust it"
        )
    archs = raw.get("architectures")
    if archs is not None and not (
        isinstance(archs, list) and all(isinstance(a, str) and 0 < len(a) <= 200 for a in archs)
    ):
        raise CheckpointFormatError(f"{name}: 'architectures' must be a list of class names, not {_shown(archs)}")
    if not isinstance(raw.get("model_type", ""), str):
        raise CheckpointFormatError(f"{name}: 'model_type' must be a name, not {_shown(raw['model_type'])}")
    limit = MAX_RANDOM_LAYERS if tensors is None else tensors
    for at, key, value in nodes:
        field = printable(f"{at}.{key}" if at else key, 60)
        if key in AXIS_KEYS and value is not None and not _axis_ok(value):
            raise CheckpointFormatError(
                f"{name}: '{field}' must be a whole number from 1 to {MAX_INPUT_AXIS:,} (or a list of up to 3), "
                f"not {_shown(value)}"
            )
        if key not in LAYER_KEYS:
            continue
        try:
            count = _count(value)
        except ValueError:
            raise CheckpointFormatError(
                f"{name}: '{field}' must be a whole number of layers, not {_shown(value)}"
            ) from None
        if count is not None and count > limit:
            raise CheckpointFormatError(
                f"{name} declares {field} = {count:,} layers but "
                + (
                    f"the checkpoint holds only {tensors:,} tensors: the config does not describe these weights"
                    if tensors is not None
                    else f"{arg('random-init')} builds at most {MAX_RANDOM_LAYERS:,} (a config-only model is built in "
                    "memory)"
                )
            )


def _shown(value: Any) -> str:
    return shown(value, 40)  # containers by type and length, text escaped
