"""The one exception hierarchy of entropyflow.

Every problem a user can cause or fix (a missing file, a wrong format, an unknown model name,
NaN weights, an unwritable output folder, a bad config) raises a subclass of
:class:`EntropyflowError` whose message is one readable line. :func:`exit_code` is the single
place that maps exceptions to process exit codes; the CLI uses nothing else.
"""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_INTERNAL = 1  # an unexpected error inside entropyflow (a bug): traceback with --debug
EXIT_USER = 2  # bad input, bad option, environment problem: one line, no traceback
EXIT_INCOMPLETE = 3  # the work ran and its report is written, but part of it failed (a sweep's failed trials)
EXIT_INTERRUPTED = 130


class EntropyflowError(Exception):
    """Base class: a problem with the user's input or environment (exit code 2)."""

    exit_code = EXIT_USER


class InputNotFoundError(EntropyflowError):
    """A path that does not exist, or a folder with no checkpoint in it."""


class InputUnreadableError(EntropyflowError):
    """A path that exists but cannot be read (permissions, a name too long, an I/O error)."""


class CheckpointFormatError(EntropyflowError):
    """An empty, truncated, corrupted or wrong-format file."""


class UntrustedCodeError(EntropyflowError):
    """A file whose loading runs code from it: a TorchScript archive, a pickle of Python objects
    (needs ``trust_code=True``; on the command line ``--trust-code``, alias ``--unsafe-pickle``)."""


class UnsafePickleError(UntrustedCodeError):
    """A checkpoint that would run pickled code to load (needs ``trust_code=True`` / ``--trust-code``)."""


class UnknownModelError(EntropyflowError):
    """An unknown torchvision:/timm:/sample: model name or spec prefix."""


class WeightsNotCachedError(EntropyflowError):
    """Pretrained weights that are not in the local cache (and no network is used). ``missing``:
    which file, where it was looked for; ``fetch``: how to put it there (both empty when unknown),
    for a caller that words the rest of the advice for its own options."""

    def __init__(self, message: str, *, missing: str = "", fetch: str = "") -> None:
        super().__init__(message)
        self.missing, self.fetch = missing, fetch


class ArchitectureMismatchError(EntropyflowError):
    """A state dict whose keys or shapes do not match the architecture given (``arch=`` / ``--arch``)."""


class TraceError(EntropyflowError):
    """The forward pass on the meta device failed (wrong input size, data-dependent code)."""


class NoLayersError(EntropyflowError):
    """A model with no conv or dense layers to analyse."""


class WeightValueError(EntropyflowError):
    """NaN or infinite weights, or a model whose analysed weights are all zero."""


class OutputError(EntropyflowError):
    """An output location that cannot be written."""


class OptionError(EntropyflowError):
    """An option value that cannot be used (a bad input size, CUDA asked for but absent...).

    Its message names the option in the caller's words (:mod:`entropyflow.words`): ``input_size=``
    from Python, ``--input-size`` from the command line."""


class BudgetError(OptionError):
    """Work that cannot fit the memory budget (``max_mem=`` / ``--max-gpu-mem``), refused before it starts."""


class MissingExtraError(EntropyflowError, ImportError):
    """An optional extra that is not installed ([sweep], [lightning], [hf]); the message says how
    to install it."""


class ConfigError(EntropyflowError):
    """An invalid λ placement config (names the bad field)."""


class IncompleteError(EntropyflowError):
    """The command wrote its report, but some of its work failed (a sweep with failed trials):
    exit code 3, so that scripts and CI notice."""

    exit_code = EXIT_INCOMPLETE


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised by the CLI's handler so that the run ends through the same
    cleanup as Ctrl-C (exit code 128 + the signal number). ``hint``: what the user can do next
    (e.g. resume an interrupted sweep)."""

    def __init__(self, signum: int, hint: str = ""):
        super().__init__(signum)
        self.signum = signum
        self.hint = hint

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


def exit_code(exc: BaseException) -> int:
    """The process exit code for an exception (the only such mapping in the project)."""
    if isinstance(exc, EntropyflowError):
        return exc.exit_code
    if isinstance(exc, Interrupted):
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INTERNAL


def one_line(text: object, limit: int = 300) -> str:
    """Collapse an arbitrary message (e.g. a wrapped library exception) to one short line."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
