"""entropyflow: how entropy flows through trained neural networks, from their weights alone.

    >>> import entropyflow
    >>> result = entropyflow.analyze("torchvision:vgg16", random_init=True)
    >>> result.layer("features.0").summary.mean

The pipeline is load → walk → estimate → report / recommend → regularize; each stage is a
subpackage. Heavy imports (torch) happen on first use of the API, so ``import entropyflow`` is cheap.
"""

from __future__ import annotations

from ._version import __version__

__all__ = [
    "__version__",
    "analyze",
    "AnalyzeOptions",
    "AnalysisResult",
    "LayerResult",
    "load_model",
    "EntropyflowError",
    "EntropyflowWarning",
    "EntropyRegularizer",
    "SigmoidEntropyLoss",
    "sigmoid_entropy_bits",
    "recommend",
    "load_config",
    "save_config",
]

_LAZY = {
    "analyze": ("analysis", "analyze"),
    "AnalyzeOptions": ("analysis", "AnalyzeOptions"),
    "AnalysisResult": ("estimate.results", "AnalysisResult"),
    "LayerResult": ("estimate.results", "LayerResult"),
    "load_model": ("load.model", "load_model"),
    "EntropyflowError": ("errors", "EntropyflowError"),
    "EntropyflowWarning": ("warn", "EntropyflowWarning"),
    "EntropyRegularizer": ("regularize", "EntropyRegularizer"),
    "sigmoid_entropy_bits": ("regularize", "sigmoid_entropy_bits"),
    "SigmoidEntropyLoss": ("regularize", "SigmoidEntropyLoss"),
    "recommend": ("recommend", "recommend"),
    "load_config": ("recommend", "load_config"),
    "save_config": ("recommend", "save_config"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'entropyflow' has no attribute {name!r}")
