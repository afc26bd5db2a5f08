"""``hf:ORG/NAME[@REVISION]``: the snapshot folder in the local Hugging Face hub cache (never
downloaded).

The cache is untrusted input like any file: the id and the revision are checked as text (a
revision is 40 hex digits or a ref name, never a path), ``refs/REVISION`` is read with a size
bound and must hold a commit hash, and every step (the repository folder, its ref, its snapshot
and the snapshot's files) must resolve inside the cache, the last three inside the repository's
own folder: the real layout's links from ``snapshots/COMMIT/FILE`` into ``../../blobs/`` keep
working, a link that leaves the repository's folder is refused.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import stat
from pathlib import Path

from ..errors import CheckpointFormatError, InputNotFoundError, InputUnreadableError, OptionError, one_line
from ..extras import install_hint, missing
from ..text import printable

__all__ = ["hub_cache", "resolve_hub"]

MAX_NAME = 96  # the Hub's limit on each part of a repository id
MAX_REVISION = 255
MAX_REF_BYTES = 256  # a ref file holds a 40-hex commit and perhaps a newline
MAX_SNAPSHOT_ENTRIES = 100_000
_PART = rf"[A-Za-z0-9](?:[A-Za-z0-9._-]{{0,{MAX_NAME - 1}}})"
_REPO = re.compile(rf"{_PART}(?:/{_PART})?")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REF_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")


def hub_cache() -> Path:
    """Where ``huggingface_hub`` keeps models: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _revision_ok(rev: str) -> bool:
    """A 40-hex commit or a git ref name (``main``, ``v1.0``, ``refs/pr/1``): no ``..``, no part
    starting with a dot, no absolute path, nothing but letters, digits and ``._+-``."""
    if not 0 < len(rev) <= MAX_REVISION or rev.endswith(".lock"):
        return False
    return all(_REF_PART.fullmatch(part) for part in rev.split("/"))


def resolve_hub(repo: str, revision: str | None = None) -> Path:
    """The snapshot folder of ``repo`` at ``revision`` (a branch, tag or commit; default main) in
    the local cache. Never downloads: a missing model is an error that says how to fetch it."""
    if len(repo) > 2 * MAX_NAME + 1 or not _REPO.fullmatch(repo) or "--" in repo or ".." in repo:
        raise OptionError(
            f"hf:{printable(repo, 80)} is not a Hugging Face repository id (ORG/NAME: letters, digits and ._-, at "
            f"most {MAX_NAME} characters each, no '--' or '..')"
        )
    if revision is not None and not _revision_ok(revision):
        raise OptionError(
            f"hf:{repo}@{printable(revision, 40)}: not a branch, tag or commit (40 hex digits or a ref name of "
            f"letters, digits and ._+-/, at most {MAX_REVISION} characters)"
        )
    rev = revision or "main"
    fetch = f"{download_command()} {repo}" + (f" --revision {rev}" if revision else "")
    cache = hub_cache()
    folder = cache / f"models--{repo.replace('/', '--')}"
    try:
        return _snapshot(cache, folder, repo, rev, fetch)
    except OSError as exc:  # a loop, a name too long, no permission, a vanished file
        raise InputUnreadableError(
            f"cannot read hf:{repo}@{printable(rev, 40)} in the local Hugging Face cache ({printable(cache, 80)}): "
            f"{one_line(exc.strerror or exc, 80)}"
        ) from exc


def _snapshot(cache: Path, folder: Path, repo: str, rev: str, fetch: str) -> Path:
    if not folder.is_dir():
        raise InputNotFoundError(
            f"hf:{repo} is not in the local Hugging Face cache ({printable(cache)}); entropyflow never downloads: "
            f"fetch it with `{fetch}` (or set HF_HUB_CACHE), or pass a local folder with config.json{_needs_hf()}"
        )
    root = _within(folder, cache.resolve(strict=True), f"hf:{repo}: its cache folder", fetch)
    commit = rev if _COMMIT.fullmatch(rev) else None
    if commit is None:
        ref = root / "refs" / rev
        if not (ref.exists() or ref.is_symlink()):
            raise InputNotFoundError(
                f"hf:{repo}@{rev} is not in the local Hugging Face cache (no refs/{printable(rev)} in "
                f"{printable(folder)}); fetch it with `{fetch}`{_needs_hf()}"
            )
        commit = _read_ref(_within(ref, root, f"hf:{repo}@{rev}: refs/{rev}", fetch), repo, rev, fetch)
    snapshot = root / "snapshots" / commit
    if not snapshot.is_dir():
        raise InputNotFoundError(
            f"hf:{repo}@{rev}: the cache has no snapshot {commit[:12]}; fetch it with `{fetch}`{_needs_hf()}"
        )
    snapshot = _within(snapshot, root, f"hf:{repo}@{rev}: snapshots/{commit[:12]}", fetch)
    with os.scandir(snapshot) as entries:
        for n, entry in enumerate(entries):
            if n >= MAX_SNAPSHOT_ENTRIES:
                raise CheckpointFormatError(
                    f"hf:{repo}@{rev}: snapshot {commit[:12]} has more than {MAX_SNAPSHOT_ENTRIES:,} entries: "
                    "not a model snapshot"
                )
            if entry.is_symlink():
                _within(Path(entry.path), root, f"hf:{repo}@{rev}: {printable(entry.name, 60)}", fetch)
    return snapshot


def _needs_hf() -> str:
    """What a model not yet fetched will also need when transformers is not installed: without it
    a fetched model is analysed from its weights alone, without its architecture."""
    if not missing("hf"):
        return ""
    return (
        f"; its architecture also needs transformers: {install_hint('hf')} (without it, only the weights are "
        "analysed: no order, geometry or totals)"
    )


def _within(path: Path, root: Path, what: str, fetch: str) -> Path:
    """``path`` resolved (symlinks followed), refused unless it stays inside ``root``."""
    target = path.resolve(strict=True)
    if target != root and not target.is_relative_to(root):
        raise CheckpointFormatError(
            f"{what} links outside {printable(root.name, 80)} (to {printable(target, 80)}): refused; the cache keeps "
            f"everything inside it (fetch the model again with `{fetch}`)"
        )
    return target


def _read_ref(ref: Path, repo: str, rev: str, fetch: str) -> str:
    """The commit hash in a ref file: a regular file of at most a few bytes holding 40 hex digits."""
    fd = os.open(ref, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointFormatError(
                f"hf:{repo}@{rev}: refs/{printable(rev)} is not a file; fetch it again with `{fetch}`"
            )
        raw = os.read(fd, MAX_REF_BYTES + 1)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    if len(raw) > MAX_REF_BYTES or not _COMMIT.fullmatch(text):
        raise CheckpointFormatError(
            f"hf:{repo}@{rev}: refs/{printable(rev)} does not hold a commit hash (40 hex digits); the cache is "
            f"damaged: fetch it again with `{fetch}`"
        )
    return text


def download_command() -> str:
    """How this machine's huggingface_hub downloads a repository: ``hf download`` (the CLI since
    huggingface_hub 0.34; ``huggingface-cli`` was removed in 1.0), ``huggingface-cli download``
    before that."""
    try:
        version = importlib.metadata.version("huggingface_hub")
    except importlib.metadata.PackageNotFoundError:
        return "hf download"  # what `pip install -U huggingface_hub` gives
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]]
    return "hf download" if tuple(parts) >= (0, 34) else "huggingface-cli download"
