"""Dense log-determinants: chunked to a memory budget, batched by size, optionally started early.

``run_dense`` never holds more than ``budget`` bytes of float64 square parts at once (one LLM
has hundreds of 4096² layers). ``DensePrefetch`` starts the work on a background thread as soon
as a checkpoint's tensors are open: LAPACK releases the GIL, so the factorisations overlap with
importing and tracing the architecture (``import torchvision`` alone takes over a second). It
stops between two chunks when cancelled (:meth:`DensePrefetch.stop`, on every error path). On a
node with several GPUs, ``--device auto`` spreads the chunks over all of them (:func:`spread`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import torch

from .. import background
from ..background import Cancelled
from ..load.source import TensorSource
from ..walk.sites import LayerSite, dense_map
from . import paper


class Job(NamedTuple):
    """The square part ``M[:m, :m]`` of a dense map: ``weight[r0:r0+m, :m]`` (read as a slice) or,
    for a fused projection's rows / a transposed (``Conv1D``) weight, of :func:`dense_map`."""

    key: str
    r0: int
    m: int
    rows: tuple[int, int] | None = None
    period: int | None = None
    transposed: bool = False


DEFAULT_BUDGET = 256 << 20  # bytes of float64 work held at once; --max-gpu-mem


def site_weight(site: LayerSite, tensors: TensorSource) -> torch.Tensor:
    """The weight of ``site`` as the map it applies: its rows of a fused projection, transposed back
    for a ``Conv1D`` weight (:func:`~entropyflow.walk.sites.dense_map`)."""
    return dense_map(tensors.get(site.weight_key), site.rows, site.row_period, site.transposed)


def square(tensors: TensorSource, job: Job, device: torch.device) -> torch.Tensor:
    if job.period is None and not job.transposed:
        part = tensors.get_slice(job.key, (slice(job.r0, job.r0 + job.m), slice(0, job.m)))
    else:
        part = dense_map(tensors.get(job.key), job.rows, job.period, job.transposed)[: job.m, : job.m]
    return part.to(device=device, dtype=paper.FLOAT)


def spread(device: torch.device) -> tuple[torch.device, ...]:
    """The devices dense work runs on: every visible GPU for a plain ``cuda`` (what ``--device
    auto`` resolves to on a GPU machine), else ``device`` alone (``cuda:N`` pins one GPU)."""
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return tuple(torch.device("cuda", i) for i in range(torch.cuda.device_count()))
    return (device,)


def _chunks(jobs: Iterable[Job], budget: int) -> list[list[Job]]:
    """The jobs in groups of one size, each group at most ``budget`` bytes of work."""
    by_m: dict[int, list[Job]] = {}
    for job in dict.fromkeys(jobs):
        by_m.setdefault(job[2], []).append(job)
    out = []
    for m, group in by_m.items():
        per = max(1, budget // (3 * m * m * 8))  # the squares, their stacked copy, the LU workspace
        out += [group[lo : lo + per] for lo in range(0, len(group), per)]
    return out


def run_dense(
    tensors: TensorSource,
    jobs: Iterable[Job],
    device: torch.device,
    budget: int = DEFAULT_BUDGET,
    cancelled: threading.Event | None = None,
    devices: Sequence[torch.device] | None = None,
) -> dict[Job, float]:
    """``log|det|`` of every job's square part, reading at most ``budget`` bytes at a time (per
    device). ``devices`` (default :func:`spread` of ``device``): with several, the chunks are read
    here one after another and factorised on the devices in turn, each device on its own thread
    (a chunk's values do not depend on the device it ran on, nor on the other chunks)."""
    targets = tuple(devices) if devices else spread(device)
    out: dict[Job, float] = {}

    def check() -> None:
        if cancelled is not None and cancelled.is_set():
            raise Cancelled("dense prefetch cancelled")

    def compute(chunk: list[Job], parts: list[torch.Tensor]) -> None:
        out.update(zip(chunk, paper.dense_logabsdet(parts, max_batch_bytes=budget).cpu().tolist(), strict=True))

    chunks = _chunks(jobs, budget)
    if len(targets) == 1 or len(chunks) == 1:
        for chunk in chunks:
            check()
            compute(chunk, [square(tensors, j, targets[0]) for j in chunk])
        return out
    pools = [ThreadPoolExecutor(1, thread_name_prefix=f"entropyflow-dense-{i}-{d}") for i, d in enumerate(targets)]
    pending: list[Future[None]] = []
    try:
        for i, chunk in enumerate(chunks):
            check()
            k = i % len(targets)
            if len(pending) >= len(targets):  # at most one chunk per device in flight: memory stays bounded
                pending.pop(0).result()
            pending.append(pools[k].submit(compute, chunk, [square(tensors, j, targets[k]) for j in chunk]))
        for f in pending:
            f.result()
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    return out


def candidate_jobs(tensors: TensorSource) -> list[Job]:
    """Square parts of every 2-D floating ``*.weight`` / packed ``in_proj_weight`` tensor."""
    jobs: list[Job] = []
    for key in tensors:
        shape = tensors.shape(key)
        if len(shape) != 2 or not tensors.dtype(key).is_floating_point:
            continue
        if key.endswith("in_proj_weight") and shape[0] == 3 * shape[1]:
            jobs += [Job(key, i * shape[1], shape[1]) for i in range(3)]
        elif key == "weight" or key.endswith(".weight"):
            jobs.append(Job(key, 0, min(shape)))
    return jobs


class DensePrefetch:
    """Computes candidate dense log-determinants on a tracked background thread; ``take`` waits
    for them, ``stop`` cancels and joins (the thread never outlives an analysis)."""

    def __init__(self, tensors: TensorSource, device: torch.device, budget: int = DEFAULT_BUDGET):
        self.tensors = tensors
        jobs = candidate_jobs(tensors)
        self._task = background.start(
            lambda cancelled: run_dense(tensors, jobs, device, budget, cancelled), "entropyflow-dense"
        )

    def take(self) -> dict[Job, float]:
        try:
            done: dict[Job, float] = self._task.future.result()
            return done
        except Exception:  # noqa: BLE001 - the estimator recomputes what is missing and reports its own errors
            return {}

    def stop(self) -> None:
        self._task.stop()
