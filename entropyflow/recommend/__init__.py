"""recommend: where to place the entropy loss (SPEC §6), as a λ placement config.

The package is ``entropyflow.recommend``; its function is :func:`recommend` here, and
``entropyflow.recommend_config`` at the top level (one name, one thing)."""

from __future__ import annotations

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
