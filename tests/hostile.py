"""Helpers for the hostile-input tests: run the CLI in a real process (exit status, signals, peak
memory of that process alone) and build malformed files byte by byte."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# The child reports its own peak resident memory (VmHWM) when it exits. ru_maxrss from wait4 is
# not usable: Linux folds the parent's peak into the child's at fork/exec, so a child of a large
# pytest process would report the parent's memory.
_HWM = """
import atexit, os
def _entropyflow_test_hwm(path=os.environ.get("ENTROPYFLOW_TEST_HWM")):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:") and path:
                    with open(path, "w") as out:
                        out.write(line.split()[1])
    except OSError:
        pass
atexit.register(_entropyflow_test_hwm)
"""
_CLI = (
    _HWM
    + """
import runpy, sys
sys.argv = ["entropyflow", *sys.argv[1:]]
runpy.run_module("entropyflow", run_name="__main__", alter_sys=True)
"""
)


@dataclass
class Run:
    rc: int  # exit code, or -N when killed by signal N
    out: str
    err: str
    peak_mib: float  # peak resident memory of this process (VmHWM; nan if it did not exit normally)
    seconds: float
    progress: list[str] = field(default_factory=list)  # the progress lines taken out of err

    @property
    def one_line_error(self) -> bool:
        lines = self.err.strip().splitlines()
        return len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in self.err + self.out


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(COLUMNS="200", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO) + os.pathsep + e.get("PYTHONPATH", ""))
    return e


def _spawn(argv: list[str], cwd=None) -> tuple[subprocess.Popen, object, object]:
    out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish()
    err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish()
    fd, hwm = tempfile.mkstemp(prefix="entropyflow-hwm-")
    os.close(fd)
    p = subprocess.Popen(
        argv, cwd=cwd, env={**env(), "ENTROPYFLOW_TEST_HWM": hwm}, stdout=out, stderr=err, stdin=subprocess.DEVNULL
    )
    p.hwm_path = hwm  # type: ignore[attr-defined]
    return p, out, err


def start(
    *args: str | os.PathLike, cwd: str | os.PathLike | None = None, prefix: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, object, object]:
    return _spawn([*prefix, sys.executable, "-c", _CLI, *map(str, args)], cwd)


def so_far(stream) -> str:
    """What a child started by :func:`start` has written to ``stream`` (its ``out`` or ``err``) so far."""
    return os.pread(stream.fileno(), 1 << 20, 0).decode("utf-8", "replace")


def finish(p: subprocess.Popen, out, err, started: float, timeout: float = 180) -> Run:
    deadline = started + timeout
    while True:
        pid, status = os.waitpid(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status = os.waitpid(p.pid, 0)
            break
        time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    texts = []
    for f in (out, err):
        f.seek(0)
        texts.append(f.read().decode("utf-8", "replace"))
        f.close()
    try:
        with open(p.hwm_path) as f:  # type: ignore[attr-defined]
            text = f.read().strip()
        peak = int(text) / 1024 if text else float("nan")
    finally:
        os.unlink(p.hwm_path)  # type: ignore[attr-defined]
    progress = [line for line in texts[1].splitlines() if PROGRESS_LINE.match(line)]
    err = "".join(line for line in texts[1].splitlines(keepends=True) if not PROGRESS_LINE.match(line.rstrip("\n")))
    return Run(p.returncode, texts[0], err, peak, time.monotonic() - started, progress)


#: a progress line of a piped run (report.progress): stages that took a second or more say so on stderr
#: before the result or the error; ``Run.err`` holds the rest, ``Run.progress`` these lines
PROGRESS_LINE = re.compile(
    r"^.+: (?:done in \d+\.\d s|\d+:\d\d(?::\d\d)? elapsed|[^,]+, \d+:\d\d(?::\d\d)? elapsed, eta \S+)$"
)


def run(*args: str | os.PathLike, cwd=None, timeout: float = 180, prefix: tuple[str, ...] = ()) -> Run:
    started = time.monotonic()
    p, out, err = start(*args, cwd=cwd, prefix=prefix)
    return finish(p, out, err, started, timeout)


def run_python(code: str, timeout: float = 120) -> Run:
    """A Python snippet in a fresh process (library calls), with its own peak memory."""
    started = time.monotonic()
    p, out, err = _spawn([sys.executable, "-c", _HWM + code])
    return finish(p, out, err, started, timeout)


def interrupt(p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    p.send_signal(sig)


# --- file builders --------------------------------------------------------------------------------


def safetensors(header: dict | bytes | str, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file from a header (dict → JSON) and data; ``length`` overrides the stated size."""
    raw = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def f32_entry(shape: list[int], begin: int = 0) -> dict:
    n = 4
    for d in shape:
        n *= d
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, begin + n]}


def baseline_peak_mib() -> float:
    """Peak memory of a run that does nothing but fail at once after the heavy imports (the cost
    of torch itself, which depends on the build: a CUDA build maps ~650 MiB of libraries)."""
    return run_python("import torch, entropyflow.analysis").peak_mib
