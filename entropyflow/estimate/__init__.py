"""estimate: the math (pure functions in ``paper``, ``pivots``, ``spectral``, ``stats``), the result
types (``results``) and :func:`estimate`, which runs the math over a walk."""

from __future__ import annotations

from ..vocab import ESTIMATORS
from .run import EstimateOptions, ProgressFn, estimate, resolve_device

__all__ = ["estimate", "EstimateOptions", "resolve_device", "ProgressFn", "ESTIMATORS"]
