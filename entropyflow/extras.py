"""The optional extras: which packages each needs, and one clear error when they are missing.

The base install (scipy included) analyses and recommends; ``[sweep]`` (Ray Tune), ``[lightning]`` and
``[hf]`` (transformers) add features whose modules call :func:`require` before importing them.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtraError

EXTRAS = {
    "sweep": (("ray", "Ray Tune"),),
    "lightning": (("lightning", "PyTorch Lightning"),),
    "hf": (("transformers", "transformers"),),
}
FEATURE = {"sweep": "entropyflow sweep", "lightning": "the Lightning callback", "hf": "Hugging Face models"}


def missing(extra: str) -> list[str]:
    """The packages of ``extra`` that cannot be imported here (without importing them)."""
    out = []
    for module, name in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken parent
            found = None
        if found is None:
            out.append(name)
    return out


def install_hint(extra: str) -> str:
    """``pip install 'entropyflow[EXTRA]'``, as a sentence fragment."""
    return f"pip install 'entropyflow[{extra}]'"


def require(extra: str) -> None:
    """Raise :class:`MissingExtraError` naming the missing packages and the pip command."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{FEATURE[extra]} needs {' and '.join(absent)}, which "
            f"{'is' if len(absent) == 1 else 'are'} not installed: "
            f"pip install 'entropyflow[{extra}]'"
        )
