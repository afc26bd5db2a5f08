"""Ray for the commands that fan work out (``sweep``'s trials, ``track``'s checkpoints): starting a
local Ray of their own, or joining a cluster, and leaving the process as it was (the ``[sweep]``
extra; this module imports Ray, so callers import it only once :func:`entropyflow.extras.require`
has passed).

A local Ray started here listens on the loopback interface only (:func:`loopback_only`,
:func:`check_loopback`): its GCS, raylet, object manager and workers accept no connection from
another machine. A cluster that wants a token says so at once (:func:`auth_problem`), instead of
Ray's client retrying for 30 s. Ray's C++ SIGTERM handler is kept off this process's signals
(:func:`init_ray`), and whatever Ray set in ``os.environ`` is undone (:func:`restore_environ`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

import ray

from .errors import OptionError
from .text import printable
from .words import option

__all__ = [
    "LOOPBACK",
    "auth_problem",
    "check_loopback",
    "init_ray",
    "loopback_only",
    "restore_environ",
    "session",
]

LOOPBACK = "127.0.0.1"
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While a local Ray starts: its node address is the loopback one, so that the GCS, the raylet,
    the object manager and every worker bind to 127.0.0.1 (Ray binds its servers to the node's
    address). ``ray.init`` turns a ``_node_ip_address`` of 127.0.0.1 into the machine's external
    address unless Ray's single-machine mode (what it uses on macOS and Windows) is on: it is, for
    the start-up only."""
    from ray._private import ray_constants

    previous = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with own_session():
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous


@contextlib.contextmanager
def own_session() -> Iterator[None]:
    """While a local Ray starts: its processes (the GCS, the raylet, and through the raylet every
    worker) run in a session of their own, out of this process's group. A signal sent to the whole
    group (``timeout -s TERM``, a process manager stopping a job by its group) then reaches this
    process only, which stops the run gracefully and shuts its Ray down; otherwise the GCS dies with
    it first and Ray's client waits 60 s for it before ending the process with status 1. Ray blocks
    only SIGINT in them. Done only where the kernel ends them with this process if it dies (Linux's
    parent-death signal, which Ray sets), as Ray itself requires before leaving the group."""
    from ray._private import services, utils

    if not utils.detect_fate_sharing_support() or not isinstance(services.ConsolePopen, type):
        yield
        return
    base = services.ConsolePopen

    class Detached(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = Detached  # type: ignore[misc]
    try:
        yield
    finally:
        services.ConsolePopen = base  # type: ignore[misc]


def check_loopback() -> None:
    """The local Ray must have come up on the loopback address: anything else would listen on a
    network interface (an unauthenticated Ray runs the jobs anyone sends it)."""
    address = ray.util.get_node_ip_address()
    if address != LOOPBACK:
        ray.shutdown()
        raise OptionError(
            f"the local Ray came up on {printable(address, 60)}, not {LOOPBACK}: it would accept jobs from the "
            f"network (Ray {getattr(ray, '__version__', '?')}); start a Ray yourself and pass {option('address')}"
        )


PROBE_S = 5.0  # seconds the probe of an --address waits for an answer
AUTH_HELP = (
    "set RAY_AUTH_MODE=token here and give the cluster's token in RAY_AUTH_TOKEN, in a file named by "
    "RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token (on the head node: ray get-auth-token)"
)


def auth_problem(address: str) -> str | None:
    """Whether the cluster at ``address`` turns this machine away for want of a token, asked once
    before connecting: Ray's client would otherwise retry for 30 s and say only that it timed out
    (the cause is in the server's log). One call answers it: a ping of the Ray Client server
    (``ray://host:port``) or of the GCS (``host:port``), with this machine's token if token
    authentication is on here. Anything but "unauthenticated" is left to ``ray.init`` to report
    (``auto`` is not probed)."""
    import grpc

    client = address.startswith("ray://")
    target = address[len("ray://") :] if client else address
    if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", target):
        return None
    try:
        from ray._private.grpc_utils import init_grpc_channel  # Ray's channel: its token interceptors

        channel = init_grpc_channel(target, options=[], asynchronous=False)
    except Exception:  # noqa: BLE001 - a Ray without it: a plain channel asks the same question
        channel = grpc.insecure_channel(target)
    try:
        if client:
            from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

            ping = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)  # type: ignore[attr-defined]
            ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(ping, timeout=PROBE_S)
        else:
            channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")(b"", timeout=PROBE_S)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            mode = os.environ.get("RAY_AUTH_MODE", "")
            if mode.lower() == "token":
                return (
                    f"the Ray cluster at {printable(address, 100)} refused this machine's token "
                    "(token authentication): give the cluster's token in RAY_AUTH_TOKEN, in a file named by "
                    "RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
                )
            return (
                f"the Ray cluster at {printable(address, 100)} uses token authentication and this machine sent "
                f"no token: {AUTH_HELP}"
            )
    finally:
        channel.close()
    return None


def init_ray(kwargs: dict[str, Any]) -> None:
    """``ray.init``, keeping this process's Python signal handlers: Ray's core installs a C++
    SIGTERM handler that aborts the process (exit 134), which would skip every cleanup."""
    main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main else {}
    try:
        ray.init(**kwargs)
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def restore_environ(saved: dict[str, str]) -> None:
    """The process environment as it was before a Ray was started here: a library call leaves
    nothing of Ray behind for the caller's later Ray (or subprocesses) to inherit."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


def init_kwargs(address: str | None, cpus: int | None, working_dir: str | None) -> dict[str, Any]:
    """What ``ray.init`` is given: a cluster at ``address``, else a local Ray of its own (never one
    that ``ray start`` left running) with ``cpus`` CPUs, bound to the loopback address."""
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "configure_logging": True,
    }
    if address:
        kwargs["address"] = address
    else:
        kwargs["address"] = "local"
        kwargs["num_cpus"] = cpus
        kwargs["_node_ip_address"] = LOOPBACK
    if working_dir:
        kwargs["runtime_env"] = {"working_dir": working_dir}
    return kwargs


def connect(address: str | None, cpus: int | None = None, working_dir: str | None = None) -> None:
    """Start a local Ray (``address`` None) or join the cluster at ``address``; any failure is an
    :class:`OptionError` with Ray's whole message on one line."""
    refused = auth_problem(address) if address else None
    if refused is not None:
        raise OptionError(refused)
    try:
        with loopback_only() if not address else contextlib.nullcontext():
            init_ray(init_kwargs(address, cpus, working_dir))
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        raise OptionError(
            f"cannot start or reach Ray{' at ' + address if address else ''}: "
            # whole: Ray puts the cause on the lines after the first
            f"{printable(' '.join(str(exc).split()) or type(exc).__name__, 600)}"
        ) from exc
    if not address:
        check_loopback()


@contextlib.contextmanager
def session(address: str | None, cpus: int | None = None, working_dir: str | None = None) -> Iterator[bool]:
    """Ray for the block: the one this process has already initialised, or one started (local,
    loopback only) or joined (``address``) here and shut down at the end, with ``os.environ`` as it
    was. Yields whether it was started here."""
    started_here = not ray.is_initialized()
    environ = dict(os.environ)  # Ray sets RAY_CLIENT_MODE, RAY_AUTH_MODE, PYTHONBREAKPOINT… in this process
    try:
        if started_here:
            connect(address, cpus, working_dir)
        yield started_here
    finally:
        if started_here:
            ray.shutdown()
            restore_environ(environ)
