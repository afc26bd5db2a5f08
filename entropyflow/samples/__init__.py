"""The bundled sample models: architectures (``sample:NAME``) and their trained weights.

The checkpoints live in the repository's ``sample_models/`` folder (built by
``sample_models/build.py`` from scikit-learn's digits) and are embedded in the wheel.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import InputNotFoundError, UnknownModelError
from . import models

DEFAULT_SAMPLE = "digits_vgg"


@dataclass(frozen=True)
class SampleInfo:
    name: str
    factory: str  # class name in entropyflow.samples.models
    input_size: tuple[int, ...]
    file: str  # bundled trained checkpoint
    description: str

    @property
    def path(self) -> Path:
        return samples_dir() / self.file


SAMPLES: dict[str, SampleInfo] = {
    s.name: s
    for s in (
        SampleInfo(
            "digits_vgg", "DigitsVGG", (1, 8, 8), "digits_vgg.pt", "VGG-style CNN, 4 convs + 2 dense (digit classifier)"
        ),
        SampleInfo(
            "digits_resnet",
            "DigitsResNet",
            (1, 8, 8),
            "digits_resnet.pt",
            "residual CNN with batch norm (digit classifier)",
        ),
        SampleInfo(
            "digits_autoencoder",
            "DigitsAutoencoder",
            (64,),
            "digits_autoencoder.pt",
            "dense autoencoder 64-32-64 (paper §5.2)",
        ),
        SampleInfo(
            "digits_unet",
            "DigitsUNet",
            (1, 8, 8),
            "digits_unet.pt",
            "U-Net with transposed up-convs and concat skips (stroke segmentation)",
        ),
    )
}


def samples_dir() -> Path:
    """``entropyflow/_sample_models`` in an installed wheel, else the repository's ``sample_models``."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_sample_models", here.parent / "sample_models"):
        if candidate.is_dir():
            return candidate
    return here.parent / "sample_models"


def sample_info(name: str) -> SampleInfo:
    try:
        return SAMPLES[name]
    except KeyError as exc:
        close = difflib.get_close_matches(name, list(SAMPLES), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (available: {', '.join(SAMPLES)})"
        raise UnknownModelError(f"unknown sample model '{name}'{hint}") from exc


def build_sample(name: str, **kwargs: object) -> nn.Module:
    factory: Callable = getattr(models, sample_info(name).factory)
    return factory(**kwargs)


def default_sample_path() -> Path:
    path = sample_info(DEFAULT_SAMPLE).path
    if not path.is_file():
        raise InputNotFoundError(
            f"the bundled sample {path.name} is missing from {path.parent} (reinstall entropyflow, or run "
            "sample_models/build.py)"
        )
    return path
