"""The one warning category of entropyflow.

The library never prints. Problems that do not stop the work (a λ config made for a different
model, a stabilised loss term that cannot act) are either returned as tuples of strings or
raised with :func:`warn` as :class:`EntropyflowWarning`, which callers can filter::

    warnings.simplefilter("error", entropyflow.warn.EntropyflowWarning)
"""

from __future__ import annotations

import warnings


class EntropyflowWarning(UserWarning):
    """A problem the user should know about that does not stop the work."""


def warn(message: str, stacklevel: int = 3) -> None:
    """``warnings.warn(message, EntropyflowWarning)`` pointing at the caller's caller."""
    warnings.warn(message, EntropyflowWarning, stacklevel=stacklevel)
