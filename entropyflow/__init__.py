"""entropyflow: how entropy flows through trained neural networks, from their weights alone.

    >>> import entropyflow
    >>> result = entropyflow.analyze("torchvision:vgg16", random_init=True)
    >>> result.layer("features.0").summary.mean
    >>> config = entropyflow.recommend_config(result)   # the function; entropyflow.recommend is the package

The pipeline is load → walk → estimate → report / recommend → regularize; each stage is a
subpackage. Heavy imports (torch) happen on first use of the API, so ``import entropyflow`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # the lazy names below, for type checkers and IDEs
    from . import recommend as recommend
    from .analysis import AnalyzeOptions as AnalyzeOptions
    from .analysis import analyze as analyze
    from .errors import EntropyflowError as EntropyflowError
    from .estimate.results import AnalysisResult as AnalysisResult
    from .estimate.results import LayerResult as LayerResult
    from .load.model import load_model as load_model
    from .recommend import load_config as load_config
    from .recommend import recommend as recommend_config
    from .recommend import save_config as save_config
    from .regularize import EntropyRegularizer as EntropyRegularizer
    from .regularize import SigmoidEntropyLoss as SigmoidEntropyLoss
    from .regularize import sigmoid_entropy_bits as sigmoid_entropy_bits
    from .warn import EntropyflowWarning as EntropyflowWarning

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
    "recommend_config",
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
    "recommend_config": ("recommend", "recommend"),
    "load_config": ("recommend", "load_config"),
    "save_config": ("recommend", "save_config"),
}


_SUBPACKAGES = ("recommend",)  # ``entropyflow.recommend`` is the package, imported on first use


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'entropyflow' has no attribute {name!r}")
