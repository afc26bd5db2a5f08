"""estimate: the math (pure functions in ``paper``, ``pivots``, ``stats``) and :func:`estimate`,
which runs it over a walk. Attributes are loaded lazily to keep the package free of cycles."""
from __future__ import annotations

__all__ = ["estimate", "EstimateOptions", "resolve_device", "ProgressFn"]

ESTIMATORS = ("paper", "spectral")  # names an analysis (and a λ config made from it) may record


def __getattr__(name: str):
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
