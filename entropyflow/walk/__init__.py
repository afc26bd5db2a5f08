"""walk: find every conv/dense map of a loaded model, in forward execution order, with geometry."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..load.model import LoadedModel
from ..load.skeleton import meta_skeleton
from ..load.source import OverlaySource, TensorSource
from ..spec import ExampleInput
from .classify import stored_weight_note
from .dispatch import train_mode_uses
from .effective import derived_weights, effective_weights
from .heuristic import walk_state_dict
from .script import trace_torchscript
from .sites import NO_TRACE_REASON, TRAIN_ONLY_REASON, ConvGeometry, DenseGeometry, LayerSite, SkippedModule, Walk
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
    more_inputs: tuple[ExampleInput, ...] | None = None,
) -> Walk:
    """Sites of ``loaded``: traced on meta when it has structure, else inferred from the state dict.
    ``max_mem``: bytes the CPU fallback's activations may take (see :func:`trace_eager`).
    ``more_inputs``: the forward's positional arguments after the main input (``input`` with more
    than one value); None: the loaded model's own (optical flow: the example input again)."""
    if loaded.script is None and loaded.skeleton is None:
        return walk_state_dict(loaded.tensors, loaded.arch_remedy)
    size = input_size or loaded.input_size
    note: tuple[str, ...] = ()
    if trace and size is None:
        size = ASSUMED_INPUT
        note = ("input size unknown: assumed 3x224x224 (give the model's input size)",)  # saved: no flag, no keyword
    more = more_inputs if more_inputs is not None else (None,) * (loaded.input_count - 1)
    if loaded.script is not None:
        walk = trace_torchscript(loaded.script, size if trace else None, more)
    else:
        assert loaded.skeleton is not None
        walk = trace_eager(
            loaded.skeleton,
            size if trace else None,
            loaded.rebuild,
            input_dtype=input_dtype,
            extra_inputs=extra_inputs,
            more_inputs=more,
            **({"max_mem": max_mem} if max_mem is not None else {}),
        )
        if trace and size is not None and any(not s.traced for s in walk.sites):  # auxiliary heads
            walk = _train_only(walk, loaded.skeleton, size, input_dtype)
    if not trace:
        note += ("trace off: no geometry, totals unavailable",)
        walk = replace(walk, sites=tuple(replace(s, untraced_reason=NO_TRACE_REASON) for s in walk.sites))
    return Walk(walk.sites, walk.skipped, walk.mode if trace else "untraced", walk.input_size, walk.notes + note)


def _train_only(walk: Walk, skeleton: torch.nn.Module, size: tuple[int, ...], dtype: torch.dtype | None) -> Walk:
    """Mark the untraced sites that a training-mode pass runs (auxiliary heads: GoogLeNet, Inception)."""
    skel = meta_skeleton(skeleton)
    keys = {s.weight_key for s in walk.sites if not s.traced}
    floating = next((p.dtype for p in skel.parameters() if p.is_floating_point()), torch.float32)
    train = train_mode_uses(skel, tuple(size), dtype or floating, keys)
    if not train:
        return walk
    sites = tuple(replace(s, untraced_reason=TRAIN_ONLY_REASON) if s.weight_key in train else s for s in walk.sites)
    return replace(walk, sites=sites)


def effective_tensors(loaded: LoadedModel, walk: Walk) -> tuple[TensorSource, Walk]:
    """Replace the stored weights of weight-transforming conv subclasses by their effective weights,
    and add those of weight-normalised and parametrised layers (stored as ``g``/``v``, ``original*``)."""
    derived = derived_weights(loaded.tensors, walk.sites, loaded.rebuild)
    if derived:
        loaded = replace(loaded, tensors=OverlaySource(loaded.tensors, derived))
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
