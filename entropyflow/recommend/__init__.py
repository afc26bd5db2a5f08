"""recommend: where to place the entropy loss (SPEC §6), as a λ placement config."""

from __future__ import annotations

import sys
import types

from ..config import SCHEMA_VERSION, LambdaConfig, LayerLambda, Strategy, fingerprint, load_config, save_config
from .placement import STRATEGIES, RecommendOptions, architecture, recommend

__all__ = [
    "recommend",
    "RecommendOptions",
    "STRATEGIES",
    "LambdaConfig",
    "LayerLambda",
    "Strategy",
    "load_config",
    "save_config",
    "fingerprint",
    "architecture",
    "SCHEMA_VERSION",
]


class _CallableModule(types.ModuleType):
    """``entropyflow.recommend`` is both this package and the function: importing the package
    replaces the function the top-level package exports lazily, so the package calls it."""

    def __call__(self, *args, **kwargs) -> LambdaConfig:
        return recommend(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
