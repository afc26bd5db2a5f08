"""A real Ray head for the tests that join a cluster (``--address``): on 127.0.0.1, token
authentication on, its own temp folder and HOME, its Ray Client server serving one client before
the tests start, every process of it killed at the end."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Head:
    client: str  # ray://127.0.0.1:port (Ray Client mode)
    gcs: str  # 127.0.0.1:port (a driver joining directly)
    token: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def clean_environ() -> dict[str, str]:
    """This process's environment without what a Ray started in it earlier left behind
    (``RAY_CLIENT_MODE``, ``RAY_AUTH_MODE``, ``PYTHONBREAKPOINT``…): the head and the CLI must
    start as they would from a shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONBREAKPOINT"}


WARM_UP = (
    "import ray, sys; ray.init(sys.argv[1], logging_level='ERROR'); "
    "ray.get(ray.remote(lambda: 1).remote()); ray.shutdown()"
)


def _warm_up(address: str, env: dict[str, str], temp: Path) -> None:
    """One real Ray Client session before the tests: the head opens its client port before the
    rest of it is ready, and on a loaded machine the first per-client server it spawns may die
    while starting ("Starting Ray client server failed"). That is the head's start-up, not the code
    under test, so it is retried here (three tries); a head that never serves a client fails the
    module with Ray's own log of the failed server."""
    problems = []
    for _ in range(3):
        try:
            done = subprocess.run(
                [sys.executable, "-c", WARM_UP, address], env=env, capture_output=True, text=True, timeout=120
            )
        except subprocess.TimeoutExpired:
            problems.append("no answer in 120 s")
            continue
        if done.returncode == 0:
            return
        problems.append(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
        time.sleep(2)
    logs = sorted(temp.glob("session_*/logs/ray_client_server_*.err"))
    tail = "\n".join(f"{log.name}: {log.read_text(errors='replace')[-1500:]}" for log in logs[-2:])
    pytest.fail(f"the Ray head never served a client: {problems}\n{tail}")


@contextlib.contextmanager
def ray_head(cpus: int = 2) -> Iterator[Head]:
    """``ray start --head`` as an administrator would run it, for the block."""
    ray_exe = Path(sys.executable).with_name("ray")
    if not ray_exe.exists():
        pytest.skip("the ray command is not installed beside this Python")
    temp = Path(tempfile.mkdtemp(prefix="efray"))  # short: Ray's socket paths must fit in 107 bytes
    token = secrets.token_hex(32)
    client_port, gcs_port = free_port(), free_port()
    env = {**clean_environ(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "HOME": str(temp)}
    head = subprocess.Popen(
        [
            str(ray_exe),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs_port}",
            f"--ray-client-server-port={client_port}",
            f"--num-cpus={cpus}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp / 'r'}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", client_port)) == 0:
                    break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start (exit {head.poll()})")
            time.sleep(0.5)
        _warm_up(f"ray://127.0.0.1:{client_port}", env, temp / "r")
        yield Head(f"ray://127.0.0.1:{client_port}", f"127.0.0.1:{gcs_port}", token)
    finally:
        pids = descendants(head.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
