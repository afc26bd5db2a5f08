"""entropyflow never downloads: the two library hooks it replaces while a builder runs.

* ``torch.hub.download_url_to_file``: every download torchvision and timm's URL loaders make goes
  through it; inside :func:`no_downloads` it raises :class:`WeightsNotCachedError` instead.
* ``torchvision.models._api.WeightsEnum.get_state_dict``: torchvision's builders fetch pretrained
  weights through it; inside :func:`torchvision_weights` it returns the state dict entropyflow
  already read from the cache, so the builder applies its own key fixes and keyword arguments to
  exactly those weights.

Replacing a module attribute is process-wide, so replacements are serialised by one lock (a
second thread building a model waits) and always undone. If a library no longer has the hook,
:class:`HookMissing` says which: ``tests/test_offline.py`` fails loudly on such a change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ..errors import WeightsNotCachedError
from ..words import arg

_lock = threading.RLock()


class HookMissing(RuntimeError):
    """A library entropyflow relies on no longer has the function it replaces (an internal error:
    entropyflow must be updated for that library version)."""


@contextmanager
def _replaced(owner: Any, name: str, value: Callable) -> Iterator[None]:
    if not callable(getattr(owner, name, None)):
        raise HookMissing(
            f"{getattr(owner, '__name__', owner)}.{name} is gone: entropyflow's offline guard needs updating"
        )
    with _lock:
        original = owner.__dict__.get(name, getattr(owner, name))
        setattr(owner, name, value)
        try:
            yield
        finally:
            setattr(owner, name, original)


@contextmanager
def no_downloads(what: str, where: str) -> Iterator[None]:
    """Turn any download attempted while ``what`` is built into a clear error naming ``where``
    the file belongs."""

    def refuse(url: str, *args: Any, **kwargs: Any) -> None:
        raise WeightsNotCachedError(
            f"building {what} would download {url}; entropyflow never downloads: "
            f"put the file in {where} or pass {arg('weights', 'PATH', quote=False)}"
        )

    with _replaced(torch.hub, "download_url_to_file", refuse):
        yield


@contextmanager
def torchvision_weights(state_dict: dict[str, torch.Tensor]) -> Iterator[None]:
    """torchvision's weight enums hand out ``state_dict`` instead of downloading."""
    from torchvision.models._api import WeightsEnum  # torchvision is imported only for torchvision: specs

    with _replaced(WeightsEnum, "get_state_dict", lambda self, *args, **kwargs: state_dict):
        yield
