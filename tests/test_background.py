"""Background work never outlives an analysis: every error path cancels and joins it. A thread
still inside a torch op when the interpreter exits aborts the process (exit 134, "terminate called
without an active exception"); these cases did, before threads were joined."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import torch
import torchvision
from hostile import run

import entropyflow
from entropyflow import background
from entropyflow.errors import OptionError, WeightValueError


def test_tasks_are_cancelled_and_joined():
    def slow(cancelled):
        while not cancelled.is_set():
            time.sleep(0.01)
        raise background.Cancelled("stopped")

    task = background.start(slow, "test-slow")
    assert background.running() >= 1
    task.stop()
    assert background.running() == 0  # the task loops until cancelled: stop() returning is the proof
    with pytest.raises(background.Cancelled):
        task.future.result()


@pytest.mark.slow
def test_a_failed_analysis_leaves_no_thread_running(tmp_path):
    sd = {"fc.weight": torch.randn(2048, 2048), "conv.weight": torch.randn(8, 3, 3, 3)}
    sd["conv.weight"][1, 2, 2, 2] = float("nan")
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(WeightValueError, match="1 NaN and 0 infinite"):
        entropyflow.analyze(str(tmp_path / "nan.pt"))
    assert background.running() == 0  # the dense prefetch and the hashing were stopped and joined
    with pytest.raises(OptionError, match="^seed must be an integer from 0 to 2\\^64−1"):
        entropyflow.analyze(str(tmp_path / "nan.pt"), seed=2**64)
    assert background.running() == 0


@pytest.fixture(scope="module")
def abort_cases(tmp_path_factory):
    """The six cases of the report, each a real file a user could have."""
    d = tmp_path_factory.mktemp("abort")
    torch.manual_seed(0)
    r18 = torchvision.models.resnet18().eval()
    sd = r18.state_dict()
    nan, inf = dict(sd), dict(sd)
    for bad, value in ((nan, float("nan")), (inf, float("inf"))):  # one bad weight each, as reported
        bad["layer1.0.conv1.weight"] = sd["layer1.0.conv1.weight"].clone()
        bad["layer1.0.conv1.weight"][5, 7, 1, 2] = value
    torch.save(nan, d / "r18_nan.pt")
    torch.save(inf, d / "r18_inf.pt")
    torch.jit.script(r18).save(str(d / "r18_script.pt"))
    torch.save(r18, d / "r18_module.pt")
    torch.save(torchvision.models.resnet50().state_dict(), d / "r50_sd.pt")
    expected = {
        "nan": (
            [d / "r18_nan.pt"],
            "error: layer layer1.0.conv1 (layer1.0.conv1.weight) has 1 NaN and 0 infinite weight values: "
            "the checkpoint is corrupted",
        ),
        "inf": (
            [d / "r18_inf.pt"],
            "error: layer layer1.0.conv1 (layer1.0.conv1.weight) has 0 NaN and 1 infinite weight values: "
            "the checkpoint is corrupted",
        ),
        "script+arch": (
            [d / "r18_script.pt", "--trust-code", "--arch", "torchvision:resnet18"],
            "error: --arch does not apply to a TorchScript archive (it carries its own architecture)",
        ),
        "module+arch": (
            [d / "r18_module.pt", "--trust-code", "--arch", "torchvision:resnet18"],
            "error: --arch does not apply to a pickled nn.Module (it carries its own architecture)",
        ),
        "weights mismatch": (
            ["torchvision:resnet18", "--weights", d / "r50_sd.pt"],
            "error: checkpoint does not match torchvision:resnet18",
        ),
        "input size": (
            [d / "r18_nan.pt", "--input-size", "99999999999999999999x8x8"],
            "error: bad --input-size '99999999999999999999x8x8': each size must be at most 1,048,576",
        ),
    }
    return d, expected


@pytest.mark.slow
def test_error_paths_never_abort_ten_runs_each(abort_cases, tmp_path):
    """Each case ten times in a real process: exit 2 with its one line every time (never 134)."""
    _, cases = abort_cases
    jobs = [(name, i) for name in cases for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        runs = dict(
            zip(
                jobs,
                pool.map(
                    lambda job: run("analyze", *cases[job[0]][0], "-q", "-o", tmp_path / f"{job[0]}-{job[1]}"), jobs
                ),
                strict=True,
            )
        )
    for (name, i), r in runs.items():
        assert r.rc == 2, (name, i, r.rc, r.err[-500:])
        assert r.one_line_error and r.err.strip().startswith(cases[name][1]), (name, r.err)
        assert not (tmp_path / f"{name}-{i}").exists()
