"""scikit-learn's digits (1797 real 8×8 images shipped with scikit-learn) as float tensors.

Used by ``sample_models/build.py`` (the bundled checkpoints) and ``docs/examples/train_digits.py``
(the regularizer on real data). scikit-learn is a test/example dependency, not a runtime one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import OptionError

SPLIT_SEED = 0


def digits(seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train, x_test, y_train, y_test``: pixels scaled to [0, 1], 80/20 stratified split."""
    try:  # scikit-learn is a test/example dependency, imported only here
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise OptionError("the digits data needs scikit-learn: pip install 'entropyflow[test]'") from exc
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=seed, stratify=d.target)
    return (
        torch.tensor(xtr),
        torch.tensor(xte),
        torch.tensor(ytr, dtype=torch.long),
        torch.tensor(yte, dtype=torch.long),
    )
