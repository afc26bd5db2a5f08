"""integrations: entropyflow inside training loops.

* :class:`~entropyflow.integrations.monitor.EntropyMonitor` (framework-free): the per-layer
  entropy profile of a live model every N steps, to CSV and TensorBoard.
* :class:`~entropyflow.integrations.lightning.EntropyGuidance` (the ``[lightning]`` extra): a
  PyTorch Lightning callback that adds a λ config's entropy term to the loss and logs it; import
  it from ``entropyflow.integrations.lightning``.
"""

from __future__ import annotations

from .monitor import EntropyMonitor, LayerProfile, Profile

__all__ = ["EntropyMonitor", "Profile", "LayerProfile"]
