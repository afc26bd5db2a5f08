"""Strictly match a state dict to an architecture (``--arch``), with a readable one-line report.

Keys may carry one extra leading component (Lightning's ``model.``, a wrapper's ``net.``) that is
stripped when that makes them match. ``num_batches_tracked`` buffers are optional (old files
lack them). When only the classifier's output size differs, :class:`NumClassesMismatch` tells
the caller to rebuild the architecture with the checkpoint's number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ArchitectureMismatchError
from .source import TensorSource

OPTIONAL_SUFFIXES = ("num_batches_tracked",)


class NumClassesMismatch(Exception):
    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.num_classes = num_classes


@dataclass(frozen=True)
class Match:
    tensors: TensorSource
    notes: tuple[str, ...]


def _candidates(keys: list[str]) -> list[tuple[str, dict[str, str]]]:
    out = [("", {k: k for k in keys})]
    heads = {k.split(".", 1)[0] for k in keys}
    if len(heads) == 1 and all("." in k for k in keys):
        head = next(iter(heads)) + "."
        out.append((head, {k[len(head) :]: k for k in keys}))
    return out


def _short(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def match_state_dict(
    expected: dict[str, tuple[int, ...]], source: TensorSource, arch: str, classifier: tuple[str, ...] = ()
) -> Match:
    """Return ``source`` renamed to the architecture's keys, or raise with what does not match."""
    best = None
    for prefix, mapping in _candidates(source.keys()):
        missing = [k for k in expected if k not in mapping and not k.endswith(OPTIONAL_SUFFIXES)]
        unexpected = [k for k in mapping if k not in expected]
        shaped = [k for k in expected if k in mapping and tuple(source.shape(mapping[k])) != tuple(expected[k])]
        score = len(missing) + len(unexpected) + len(shaped)
        if best is None or score < best[0]:
            best = (score, prefix, mapping, missing, unexpected, shaped)
    assert best is not None  # _candidates always yields the keys as they are
    _, prefix, mapping, missing, unexpected, shaped = best
    if not (missing or unexpected or shaped):
        keep = {k: v for k, v in mapping.items() if k in expected}
        notes = (f"stripped key prefix '{prefix}' to match {arch}",) if prefix else ()
        return Match(source.renamed(keep), notes)
    if (
        shaped
        and not missing
        and not unexpected
        and classifier
        and all(k.rsplit(".", 1)[0] in classifier for k in shaped)
    ):
        n = {source.shape(mapping[k])[0] for k in shaped}
        if len(n) == 1:
            raise NumClassesMismatch(n.pop())
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_short(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_short(unexpected)})")
    if shaped:
        parts.append(
            f"{len(shaped)} mis-shaped ("
            + _short(
                [f"{k}: checkpoint {tuple(source.shape(mapping[k]))} vs arch {tuple(expected[k])}" for k in shaped], 2
            )
            + ")"
        )
    raise ArchitectureMismatchError(f"checkpoint does not match {arch}: {'; '.join(parts)}")
