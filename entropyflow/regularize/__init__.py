"""regularize: the paper's entropy loss terms for training (eqs. 19–25) and seed 000's sigmoid entropy."""

from __future__ import annotations

from ..warn import EntropyflowWarning
from .regularizer import EntropyRegularizer, model_fingerprint, unwrap
from .sigmoid import SigmoidEntropyLoss, sigmoid_entropy_bits
from .terms import conv_inverse_term, conv_log_term, dense_inverse_term, dense_log_term

__all__ = [
    "EntropyRegularizer",
    "EntropyflowWarning",
    "model_fingerprint",
    "unwrap",
    "SigmoidEntropyLoss",
    "sigmoid_entropy_bits",
    "conv_log_term",
    "conv_inverse_term",
    "dense_log_term",
    "dense_inverse_term",
]
