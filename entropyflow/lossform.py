"""What a loss form can do, in plain floats (no torch): shared by ``recommend``, which warns
when it places a term that cannot act, and ``regularize``, which warns when it applies one."""

from __future__ import annotations

import math


def dense_inverse_inertness(logabsdet: float, eps: float, factor: float = 1e-6) -> str | None:
    """Why eq. 24, ``λ/(|det W|+ε)``, cannot act on a layer with this ``log|det|``, or None.

    Its gradient is ``−λ·|det|/(|det|+ε)²·W⁻ᵀ``, the log form's ``−λ·W⁻ᵀ`` times ``|det|/(|det|+ε)²``:
    * ``|det| < factor·ε`` (every realistic layer: a 4096² layer has ``log|det| ≈ −3900``): the
      factor is below ``factor/ε``, the value sits at ``λ/ε``;
    * ``|det| > 1/factor`` (``log|det| > 13.8``): the factor is about ``1/|det|`` < ``factor``, the
      value is ``≈ 0``, and the term does nothing either."""
    if logabsdet < math.log(eps) + math.log(factor):
        return (
            f"|det W| underflows against ε (log|det| = {logabsdet:.1f}): the value is λ/ε and the gradient "
            f"below {factor:g}/ε of the log form's"
        )
    if logabsdet > -math.log(factor):
        return (
            f"|det W| is huge (log|det| = {logabsdet:.1f}): the value is ≈ 0 and the gradient about 1/|det| "
            f"(< {factor:g}) of the log form's"
        )
    return None


__all__ = ["dense_inverse_inertness"]
