"""Runs fuzz cases in one process and reports each as a JSON line (see test_fuzz.py).

A case is ``{"kind": "cli", "args": [...]}`` (the real command line, in-process, output captured)
or ``{"kind": "config", "path": ...}`` (``EntropyRegularizer.from_config`` on a small model). The
line for a case is written before the next starts, so a process killed by a signal names the case.

A case may also carry ``env`` (variables set while it runs, such as ``HF_HUB_CACHE``), ``protect``
(``{path: sha256}`` of the user's files: the line lists those whose content changed or that are
gone), ``absent`` (paths that must not exist afterwards: the marker a planted payload would
write if its code ran) and ``no_ray`` (a sweep may check and summarise, but a trial it would
launch ends it with exit 2 instead of starting Ray: the fuzz is about what it reads)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    from torch import nn

    from entropyflow import EntropyRegularizer
    from entropyflow.cli import main as cli
    from entropyflow.errors import EntropyflowError, OptionError

    def no_ray(*args, **kwargs):
        raise OptionError("fuzz: this case would start Ray")

    ray_tune = None

    warnings.simplefilter("ignore")
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    for i, case in enumerate(cases):
        print(json.dumps({"start": i}), flush=True)
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        saved = {key: os.environ.get(key) for key in case.get("env", {})}
        os.environ.update(case.get("env", {}))
        if case.get("no_ray") and ray_tune is None:
            from entropyflow.sweep import ray_tune  # the [sweep] extra, only for sweep cases

            real_ray = ray_tune.run
        if ray_tune is not None:
            ray_tune.run = no_ray if case.get("no_ray") else real_ray
        if case["kind"] == "cli":
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = cli(case["args"])
                except BaseException as exc:  # noqa: BLE001 - anything escaping main() is a bug
                    rc, err = 99, io.StringIO(f"escaped main(): {type(exc).__name__}: {exc}")
        else:
            try:
                EntropyRegularizer.from_config(model, case["path"])
                rc = 0
            except EntropyflowError as exc:
                rc = 2
                err.write(f"error: {exc}\n")
            except Exception as exc:  # noqa: BLE001 - a bug
                rc = 1
                err.write(f"Traceback: {type(exc).__name__}: {exc}\n")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        text = err.getvalue()
        changed = [p for p, digest in case.get("protect", {}).items() if sha256(p) != digest]
        ran = [p for p in case.get("absent", []) if os.path.lexists(p)]
        print(
            json.dumps(
                {
                    "case": i,
                    "rc": rc,
                    "seconds": round(time.monotonic() - started, 3),
                    "traceback": "Traceback" in text + out.getvalue(),
                    "lines": len(text.strip().splitlines()),
                    "err": text[-400:],
                    "changed": changed,
                    "ran": ran,
                }
            ),
            flush=True,
        )


def run_cases(cases: list[dict], folder: Path, timeout: float) -> list[dict]:
    """Run ``cases`` in one worker process and check what every fuzz test requires of each: exit 0
    or 2 (never 1, a signal or an escaped exception), no traceback, one line for an error, at most
    20 s, no protected file changed and no marker of a planted payload. Returns the result lines."""
    import subprocess

    from hostile import env

    (folder / "cases.json").write_text(json.dumps(cases))
    p = subprocess.Popen(
        [sys.executable, __file__, str(folder / "cases.json")],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        stdout, stderr = p.communicate()
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    results = [line for line in lines if "case" in line]
    last = max((line["start"] for line in lines if "start" in line), default=None)
    assert p.returncode == 0, (
        f"worker ended with {p.returncode} at case {last}: {cases[last] if last is not None else ''}\n{stderr[-2000:]}"
    )
    assert len(results) == len(cases)
    bad = [
        (cases[r["case"]], r)
        for r in results
        if r["rc"] not in (0, 2) or r["traceback"] or (r["rc"] == 2 and r["lines"] != 1)
    ]
    assert not bad, [(case.get("args", case.get("path")), r["rc"], r["err"]) for case, r in bad[:3]]
    slow = [(cases[r["case"]], r["seconds"]) for r in results if r["seconds"] > 20]
    assert not slow, slow
    harmed = [(cases[r["case"]].get("args"), r["changed"], r["ran"]) for r in results if r["changed"] or r["ran"]]
    assert not harmed, harmed[:3]
    return results


def sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


if __name__ == "__main__":
    main()
