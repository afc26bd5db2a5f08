"""recommend: where to place the entropy loss (SPEC §6), as a λ placement config."""
from __future__ import annotations

from .placement import STRATEGIES, RecommendOptions, architecture, recommend
from .schema import SCHEMA_VERSION, LambdaConfig, LayerLambda, Strategy, fingerprint, load_config, save_config

__all__ = ["recommend", "RecommendOptions", "STRATEGIES", "LambdaConfig", "LayerLambda", "Strategy", "load_config",
           "save_config", "fingerprint", "architecture", "SCHEMA_VERSION"]
