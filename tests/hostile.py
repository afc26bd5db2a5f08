"""Helpers for the hostile-input tests: run the CLI in a real process (exit status, signals, peak
memory of that process alone) and build malformed files byte by byte."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    rc: int  # exit code, or -N when killed by signal N
    out: str
    err: str
    peak_mib: float  # peak resident memory of this process (ru_maxrss)
    seconds: float

    @property
    def one_line_error(self) -> bool:
        lines = self.err.strip().splitlines()
        return len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in self.err + self.out


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(COLUMNS="200", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO) + os.pathsep + e.get("PYTHONPATH", ""))
    return e


def start(*args: str | os.PathLike, cwd: str | os.PathLike | None = None, prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen, object, object]:
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    p = subprocess.Popen([*prefix, sys.executable, "-m", "entropyflow", *map(str, args)], cwd=cwd, env=env(),
                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    return p, out, err


def finish(p: subprocess.Popen, out, err, started: float, timeout: float = 180) -> Run:
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status, usage = os.wait4(p.pid, 0)
            break
        time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    texts = []
    for f in (out, err):
        f.seek(0)
        texts.append(f.read().decode("utf-8", "replace"))
        f.close()
    return Run(p.returncode, texts[0], texts[1], usage.ru_maxrss / 1024, time.monotonic() - started)


def run(*args: str | os.PathLike, cwd=None, timeout: float = 180, prefix: tuple[str, ...] = ()) -> Run:
    started = time.monotonic()
    p, out, err = start(*args, cwd=cwd, prefix=prefix)
    return finish(p, out, err, started, timeout)


def run_python(code: str, timeout: float = 120) -> Run:
    """A Python snippet in a fresh process (library calls), with its own peak memory."""
    started = time.monotonic()
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    p = subprocess.Popen([sys.executable, "-c", code], env=env(), stdout=out, stderr=err, stdin=subprocess.DEVNULL)
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
