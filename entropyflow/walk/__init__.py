"""walk: find every conv/dense map of a loaded model, in forward execution order, with geometry."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..load.model import LoadedModel
from ..load.source import OverlaySource, TensorSource
from .classify import stored_weight_note
from .effective import effective_weights
from .heuristic import walk_state_dict
from .script import trace_torchscript
from .sites import ConvGeometry, DenseGeometry, LayerSite, SkippedModule, Walk
from .trace import trace_eager

__all__ = ["walk_model", "effective_tensors", "Walk", "LayerSite", "SkippedModule", "ConvGeometry", "DenseGeometry"]

ASSUMED_INPUT = (3, 224, 224)


def walk_model(
    loaded: LoadedModel,
    input_size: tuple[int, ...] | None = None,
    trace: bool = True,
    input_dtype: torch.dtype | None = None,
    extra_inputs: tuple[str, ...] = (),
    max_mem: int | None = None,
) -> Walk:
    """Sites of ``loaded``: traced on meta when it has structure, else inferred from the state dict.
    ``max_mem``: bytes the CPU fallback's activations may take (see :func:`trace_eager`)."""
    if loaded.script is None and loaded.skeleton is None:
        return walk_state_dict(loaded.tensors)
    size = input_size or loaded.input_size
    note: tuple[str, ...] = ()
    if trace and size is None:
        size = ASSUMED_INPUT
        note = ("input size unknown: assumed 3x224x224 (pass --input-size)",)
    if loaded.script is not None:
        walk = trace_torchscript(loaded.script, size if trace else None)
    else:
        assert loaded.skeleton is not None
        walk = trace_eager(
            loaded.skeleton,
            size if trace else None,
            loaded.rebuild,
            input_dtype=input_dtype,
            extra_inputs=extra_inputs,
            **({"max_mem": max_mem} if max_mem is not None else {}),
        )
    if not trace:
        note += ("--no-trace: no geometry, totals unavailable",)
    return Walk(walk.sites, walk.skipped, walk.mode if trace else "untraced", walk.input_size, walk.notes + note)


def effective_tensors(loaded: LoadedModel, walk: Walk) -> tuple[TensorSource, Walk]:
    """Replace the stored weights of weight-transforming conv subclasses by their effective weights."""
    if loaded.skeleton is None or not any(s.custom_forward for s in walk.sites):
        return loaded.tensors, walk
    weights, notes = effective_weights(loaded.skeleton, walk.sites, loaded.tensors)
    if not notes:
        return loaded.tensors, walk
    sites = tuple(
        replace(
            s, notes=tuple(notes[s.weight_key] if n == stored_weight_note(s.custom_forward) else n for n in s.notes)
        )
        if s.weight_key in notes and s.custom_forward
        else s
        for s in walk.sites
    )
    tensors = OverlaySource(loaded.tensors, weights) if weights else loaded.tensors
    return tensors, replace(walk, sites=sites)
