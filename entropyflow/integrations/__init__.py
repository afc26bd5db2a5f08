"""integrations: entropyflow inside training loops.

* :class:`~entropyflow.integrations.monitor.EntropyMonitor` (framework-free): the per-layer
  entropy profile of a live model every N steps, to CSV and TensorBoard.
* :class:`~entropyflow.integrations.lightning.EntropyGuidance` (the ``[lightning]`` extra): a
  PyTorch Lightning callback that adds a λ config's entropy term to the loss and logs it; import
  it from ``entropyflow.integrations.lightning``.
* :class:`~entropyflow.integrations.transformers.EntropyTrainer` and
  :class:`~entropyflow.integrations.transformers.EntropyMonitorCallback` (the ``[hf]`` extra): the
  entropy term in a Hugging Face ``Trainer``'s loss and logs, and the profile every N steps; import
  them from ``entropyflow.integrations.transformers`` (not here, so that transformers is imported
  only by who uses it).

The monitors take ``input=`` as ``analyze`` does (``"long:1x128"``: token ids give a transformer
its layer totals), and trace a module without ``forward()`` through the attribute that holds its
layers (``trace_module=`` when several do).
"""

from __future__ import annotations

from .monitor import EntropyMonitor, LayerProfile, Profile

__all__ = ["EntropyMonitor", "Profile", "LayerProfile"]
