"""What machine a benchmark ran on (printed with every table)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time


def describe() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(layer.split(":", 1)[1].strip() for layer in f if layer.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(layer for layer in f if layer.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
    }


def git_rev() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


TIME = shutil.which("time", path="/usr/bin:/bin") or "/usr/bin/time"


def child(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one child process.

    The peak comes from GNU time (``/usr/bin/time -f %M``), which forks from a small process:
    Linux carries a parent's RSS high-water mark into children forked from it, so
    ``getrusage``/``wait4`` in a (large) benchmark process would report itself instead."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t = time.perf_counter()
        r = subprocess.run([TIME, "-f", "%M", "-o", rss.name, *cmd], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        return wall, int(rss.read().strip().splitlines()[-1]) / 1024, r.stdout
