"""Architectures and pretrained weights from torchvision, timm and the bundled samples.

Nothing here touches the network. Pretrained weights are looked up in the caches the libraries
themselves use (the torch hub ``checkpoints`` folder, the Hugging Face hub cache); when they are
absent the error names the exact file or repository expected and how to provide it.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..errors import UnknownModelError, WeightsNotCachedError, one_line
from ..samples import build_sample, sample_info
from ..spec import ModelSpec
from ..words import arg
from .hf_cache import download_command
from .offline import no_downloads, torchvision_weights
from .skeleton import meta_skeleton

DEFAULT_INPUT = (3, 224, 224)
CLIP_FRAMES = 16  # torchvision's video reference scripts' default --clip-len (the Kinetics clips of r3d_18 & co.)


@contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


# --------------------------------------------------------------------------- torchvision
def _tv_check(spec: ModelSpec):
    import torchvision  # only the zoo a spec names is imported (torchvision alone takes ~0.5 s)

    names = torchvision.models.list_models()
    if spec.name not in names:
        raise UnknownModelError(f"unknown torchvision model '{spec.name}'{_suggest(spec.name, names)}")
    return torchvision


def _tv_weights(spec: ModelSpec):
    tv = _tv_check(spec)
    try:
        enum = tv.models.get_model_weights(spec.name)
    except (ValueError, KeyError):
        return None
    tag = spec.tag or "DEFAULT"
    try:
        return enum[tag] if tag != "DEFAULT" else enum.DEFAULT
    except KeyError as exc:
        raise UnknownModelError(
            f"torchvision:{spec.name} has no weights '{tag}' (available: {', '.join(m.name for m in enum)})"
        ) from exc


def _tv_input_size(weights) -> tuple[int, ...]:
    kw = getattr(getattr(weights, "transforms", None), "keywords", {}) or {}
    crop = kw.get("crop_size")
    if isinstance(crop, int):
        return (3, crop, crop)
    if isinstance(crop, (list, tuple)) and len(crop) == 2:
        return (3, *crop)
    return DEFAULT_INPUT


# --------------------------------------------------------------------------- timm
def _timm_check(spec: ModelSpec):
    import timm  # only the zoo a spec names is imported

    if not timm.is_model(spec.name):
        raise UnknownModelError(f"unknown timm model '{spec.name}'{_suggest(spec.name, timm.list_models())}")
    return timm


def _timm_name(spec: ModelSpec) -> str:
    return f"{spec.name}.{spec.tag}" if spec.tag else spec.name


def _timm_create(spec: ModelSpec, **kwargs) -> nn.Module:
    timm = _timm_check(spec)
    try:
        with _quiet():
            return timm.create_model(_timm_name(spec), pretrained=False, **kwargs)
    except RuntimeError as exc:
        if "Invalid pretrained tag" in str(exc) or "tag" in str(exc):
            raise UnknownModelError(f"timm:{_timm_name(spec)}: {one_line(exc, 150)}") from exc
        raise


def _pretrained_cfg(spec: ModelSpec) -> dict[str, Any]:
    """timm's pretrained configuration of a model (input size, weight locations), built on meta."""
    return dict(cast(Any, _timm_create(spec)).pretrained_cfg)


def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def _hf_cached_file(repo_id: str, filenames: list[str]) -> Path | None:
    """A file of ``repo_id`` in the local Hugging Face hub cache (``models--org--name/snapshots``)."""
    repo = _hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    refs = repo / "refs" / "main"
    snaps = [repo / "snapshots" / refs.read_text().strip()] if refs.is_file() else []
    snaps += sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    for snap in snaps:
        for name in filenames:
            if (snap / name).is_file():
                return snap / name
    return None


def _torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


# --------------------------------------------------------------------------- public API
def check_spec(spec: ModelSpec) -> None:
    """Raise :class:`UnknownModelError` for an unknown name (with suggestions)."""
    if spec.source == "torchvision":
        _tv_weights(spec) if spec.tag else _tv_check(spec)
    elif spec.source == "timm":
        _timm_check(spec)
    elif spec.source == "sample":
        sample_info(spec.name)


def default_input_size(spec: ModelSpec, model: nn.Module | None = None) -> tuple[int, ...]:
    """The example input's size (without the batch dimension) for ``spec``; ``model``: the module as
    built, whose own declared size wins over the pretrained weights' metadata (see :func:`default_input`)."""
    return default_input(spec, model)[0]


def default_input(spec: ModelSpec, model: nn.Module | None = None) -> tuple[tuple[int, ...], int, str | None]:
    """(size without the batch dimension, how many positional forward arguments take it, a note
    saying how it was chosen when that is not the plain image size). torchvision: the weights'
    crop size, unless the built ``model`` declares the size it was built for (a ViT built without
    its weights: ``vit_h_14`` is 224, its SWAG weights 518); video models get a clip of
    :data:`CLIP_FRAMES` frames (at least the weights' ``min_temporal_size``), optical flow two frames."""
    if spec.source == "torchvision":
        return _tv_default(spec, model)
    return _default_size(spec), 1, None


def _tv_default(spec: ModelSpec, model: nn.Module | None) -> tuple[tuple[int, ...], int, str | None]:
    tv = _tv_check(spec)
    w = _tv_weights(spec)
    size = _tv_input_size(w) if w is not None else DEFAULT_INPUT
    note = None
    built = getattr(model, "image_size", None) if model is not None else None
    if isinstance(built, int) and not isinstance(built, bool) and (built, built) != size[1:]:
        note = f"input: 3x{built}x{built}, the image size {type(model).__name__} is built for" + (
            f" (the weights' crop size is {size[1]}x{size[2]})" if w is not None else ""
        )
        size = (3, built, built)
    family = tv.models.get_model_builder(spec.name).__module__
    if family.startswith("torchvision.models.video."):
        meta = getattr(w, "meta", {}) or {}
        frames = max(CLIP_FRAMES, int(meta.get("min_temporal_size") or 1))
        size = (size[0], frames, *size[1:])
        note = (
            f"input: a video clip {'x'.join(map(str, size))} (channels, frames, height, width): "
            f"{frames} frames (torchvision's clip length) at the weights' crop size"
        )
    if family.startswith("torchvision.models.optical_flow."):
        note = f"input: two frames (image1, image2), each {'x'.join(map(str, size))}"
        return size, 2, note
    return size, 1, note


def _default_size(spec: ModelSpec) -> tuple[int, ...]:
    if spec.source == "timm":
        with torch.device("meta"):
            cfg = _pretrained_cfg(spec)
        return tuple(cfg.get("input_size") or DEFAULT_INPUT)
    return sample_info(spec.name).input_size


def offline(spec: ModelSpec):
    """Building ``spec`` can never download anything (see :mod:`entropyflow.load.offline`)."""
    return no_downloads(str(spec), str(_torch_hub_checkpoints()))


def _build_on(spec: ModelSpec, device: str, kwargs: dict) -> nn.Module:
    with torch.device(device), _quiet(), offline(spec):
        if spec.source == "torchvision":
            tv = _tv_check(spec)
            params = inspect.signature(tv.models.get_model_builder(spec.name)).parameters
            if "weights_backbone" in params:  # segmentation/detection: no pretrained backbone download
                kwargs = {"weights_backbone": None, **kwargs}
            return tv.models.get_model(spec.name, weights=None, **kwargs)
        if spec.source == "timm":
            return _timm_create(spec, **kwargs)
        return build_sample(spec.name, **kwargs)


def build(spec: ModelSpec, *, device: str = "meta", num_classes: int | None = None) -> nn.Module:
    """The architecture with default (random) initialisation on ``device``.

    On ``meta`` nothing is allocated; a builder that needs real values while it initialises
    (e.g. ``.item()`` in an init function) is built on the CPU and converted to a meta skeleton.
    """
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if device != "meta":
        return _build_on(spec, device, kwargs)
    try:
        return _build_on(spec, "meta", kwargs)
    except (NotImplementedError, RuntimeError) as exc:
        if "meta" not in str(exc):
            raise
    return meta_skeleton(_build_on(spec, "cpu", kwargs))


def build_random(spec: ModelSpec, seed: int) -> nn.Module:
    """A reproducible random initialisation: ``torch.manual_seed(seed)`` then the library's builder."""
    torch.manual_seed(seed)
    return build(spec, device="cpu")


def pretrained_file(spec: ModelSpec) -> tuple[Path, str]:
    """The cached pretrained weight file for a zoo spec, and a description of it."""
    if spec.source == "torchvision":
        w = _tv_weights(spec)
        if w is None:
            raise WeightsNotCachedError(
                f"torchvision:{spec.name} has no pretrained weights: use {arg('random-init')} or "
                f"{arg('weights', 'PATH', quote=False)}"
            )
        f = _torch_hub_checkpoints() / os.path.basename(w.url)
        if not f.is_file():
            missing = (
                f"pretrained weights for torchvision:{spec.name} ({w}) are not cached: expected {f} (from {w.url})"
            )
            raise WeightsNotCachedError(
                f"{missing}; copy the file there, pass {arg('weights', 'PATH', quote=False)}, or use "
                f"{arg('random-init')}",
                missing=missing,
                fetch="copy the file there",
            )
        return f, f"torchvision {w} from the torch hub cache"
    if spec.source == "timm":
        with torch.device("meta"):
            cfg = _pretrained_cfg(spec)
        repo, url = cfg.get("hf_hub_id"), cfg.get("url")
        if cfg.get("file") and Path(cfg["file"]).is_file():
            return Path(cfg["file"]), f"timm {_timm_name(spec)} from {cfg['file']}"
        if repo:
            names = [n for n in (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin") if n]
            f = _hf_cached_file(repo, names)
            if f:
                return f, f"timm {_timm_name(spec)} from the Hugging Face cache ({repo})"
        if url:
            f = _torch_hub_checkpoints() / os.path.basename(url)
            if f.is_file():
                return f, f"timm {_timm_name(spec)} from the torch hub cache"
        where = [f"Hugging Face repo {repo} (model.safetensors in {_hf_cache_dir()})"] if repo else []
        where += [f"{_torch_hub_checkpoints() / os.path.basename(url)}"] if url else []
        if not where:
            raise WeightsNotCachedError(
                f"timm:{_timm_name(spec)} has no pretrained weights: use {arg('random-init')} or "
                f"{arg('weights', 'PATH', quote=False)}"
            )
        missing = f"pretrained weights for timm:{_timm_name(spec)} are not cached: expected {' or '.join(where)}"
        fetch = (
            f"download them where there is network ({download_command()} {repo}) and copy the cache here"
            if repo
            else "copy the file there"
        )
        raise WeightsNotCachedError(
            f"{missing}; {fetch}, pass {arg('weights', 'PATH', quote=False)}, or use {arg('random-init')}",
            missing=missing,
            fetch=fetch,
        )
    return sample_info(spec.name).path, f"bundled sample weights ({sample_info(spec.name).path.name})"


def build_pretrained_torchvision(spec: ModelSpec, state_dict: dict, device: str = "meta") -> nn.Module:
    """torchvision's own builder for these weights (its kwargs and key fixes), on ``device``.

    The builder's download is replaced by ``state_dict`` (already read from the cache), so the
    architecture is exactly the one torchvision builds for the weights and no file is fetched.
    """
    w = _tv_weights(spec)
    tv = _tv_check(spec)
    with torchvision_weights(state_dict), _quiet(), offline(spec):
        if device != "meta":
            return tv.models.get_model(spec.name, weights=w)
        try:
            with torch.device("meta"):
                return tv.models.get_model(spec.name, weights=w)
        except (NotImplementedError, RuntimeError) as exc:
            if "meta" not in str(exc):
                raise
        return meta_skeleton(tv.models.get_model(spec.name, weights=w))
