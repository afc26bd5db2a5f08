"""load: from a spec (file, ``torchvision:``, ``timm:``, ``sample:``) or a live module to named
tensors plus the structure to trace them with.

``paths`` and ``hashing`` import no torch, so that the CLI can start hashing a checkpoint before
the heavy imports: that is why this package's own names load on first use (a deliberate start-up
saving of the CLI), instead of being imported here."""

from __future__ import annotations

__all__ = ["LoadOptions", "LoadedModel", "load_model", "TensorSource"]


def __getattr__(name: str):
    if name in ("LoadOptions", "LoadedModel", "load_model"):
        from . import model

        return getattr(model, name)
    if name == "TensorSource":
        from .source import TensorSource

        return TensorSource
    raise AttributeError(name)
