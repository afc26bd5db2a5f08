"""Runs fuzz cases in one process and reports each as a JSON line (see test_fuzz.py).

A case is ``{"kind": "cli", "args": [...]}`` (the real command line, in-process, output captured)
or ``{"kind": "config", "path": ...}`` (``EntropyRegularizer.from_config`` on a small model). The
line for a case is written before the next starts, so a process killed by a signal names the case."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import warnings
from pathlib import Path


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    from torch import nn

    from entropyflow import EntropyRegularizer
    from entropyflow.cli import main as cli
    from entropyflow.errors import EntropyflowError

    warnings.simplefilter("ignore")
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    for i, case in enumerate(cases):
        print(json.dumps({"start": i}), flush=True)
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
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
        text = err.getvalue()
        print(
            json.dumps(
                {
                    "case": i,
                    "rc": rc,
                    "seconds": round(time.monotonic() - started, 3),
                    "traceback": "Traceback" in text + out.getvalue(),
                    "lines": len(text.strip().splitlines()),
                    "err": text[-400:],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
