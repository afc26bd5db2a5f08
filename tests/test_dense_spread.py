"""Dense log-determinants spread over several devices (issue 24): the chunks go to the devices in
turn, each on its own thread, and every value is the one the serial run gives."""

from __future__ import annotations

import threading

import pytest
import torch

from entropyflow.estimate import dense
from entropyflow.estimate.dense import Job, run_dense, spread
from entropyflow.load.source import DictSource


def source() -> tuple[DictSource, list[Job]]:
    gen = torch.Generator().manual_seed(0)
    tensors = {f"l{i}.weight": torch.randn(m, m + 3, generator=gen) for i, m in enumerate([8, 8, 8, 16, 16, 5, 8, 32])}
    src = DictSource(tensors)
    return src, [Job(k, 0, min(t.shape)) for k, t in tensors.items()]


def test_spread_runs_every_chunk_once_and_gives_the_serial_values(monkeypatch):
    src, jobs = source()
    budget = 3 * 8 * 8 * 8  # one 8×8 square per chunk: many chunks
    serial = run_dense(src, jobs, torch.device("cpu"), budget, devices=[torch.device("cpu")])
    seen: list[tuple[str, int]] = []
    compute = dense.paper.dense_logabsdet

    def counted(parts, max_batch_bytes):
        seen.append((threading.get_ident(), len(parts)))
        return compute(parts, max_batch_bytes=max_batch_bytes)

    monkeypatch.setattr(dense.paper, "dense_logabsdet", counted)
    cpus = [torch.device("cpu")] * 3
    spread_out = run_dense(src, jobs, torch.device("cpu"), budget, devices=cpus)
    assert spread_out == serial and set(serial) == set(jobs)  # bit for bit, every job
    assert sum(n for _, n in seen) == len(jobs)  # each square factorised once
    assert len({name for name, _ in seen}) == 3  # on three threads, one per device
    # the values are the float64 log|det| of each square part
    for job in jobs:
        w = src.get(job.key)[: job.m, : job.m].double()
        assert serial[job] == pytest.approx(float(torch.linalg.slogdet(w).logabsdet), abs=1e-12)


def test_spread_chooses_every_gpu_only_for_a_plain_cuda(monkeypatch):
    assert spread(torch.device("cpu")) == (torch.device("cpu"),)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert spread(torch.device("cuda")) == tuple(torch.device("cuda", i) for i in range(4))
    assert spread(torch.device("cuda", 2)) == (torch.device("cuda", 2),)  # cuda:N pins one GPU


def test_a_cancelled_spread_stops_between_chunks():
    src, jobs = source()
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(dense.Cancelled):
        run_dense(src, jobs, torch.device("cpu"), 3 * 8 * 8 * 8, cancelled, devices=[torch.device("cpu")] * 2)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_give_the_cpu_values():
    src, jobs = source()
    on_cpu = run_dense(src, jobs, torch.device("cpu"), 3 * 8 * 8 * 8)
    on_gpus = run_dense(src, jobs, torch.device("cuda"), 3 * 8 * 8 * 8)
    assert on_gpus.keys() == on_cpu.keys()
    assert all(on_gpus[j] == pytest.approx(on_cpu[j], abs=1e-10) for j in jobs)
