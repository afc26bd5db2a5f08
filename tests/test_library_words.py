"""Errors speak the caller's words (issue 23): the same failure names ``input_size=`` / ``arch=`` /
``trace=False`` to a Python caller and ``--input-size`` / ``--arch`` / ``--no-trace`` on the command
line; the CLI's words end with its command; texts saved in results read the same either way."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest
import torch
import typer.main
from torch import nn
from typer.testing import CliRunner

import entropyflow
from entropyflow import words
from entropyflow.analysis import AnalyzeOptions
from entropyflow.cli import app
from entropyflow.errors import BudgetError, OptionError, TraceError
from entropyflow.samples import build_sample
from entropyflow.walk.heuristic import NO_ARCH, ORDER_NOTE

PACKAGE = Path(entropyflow.__file__).resolve().parent


def cli_error(*args: object) -> str:
    """The one error line of a CLI run that must fail with a user error (exit 2)."""
    r = CliRunner().invoke(app, [str(a) for a in args], prog_name="entropyflow")
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr, r.exception)
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line[len("error: ") :]


def library_error(kind: type[Exception], **kwargs: object) -> str:
    with pytest.raises(kind) as caught:
        entropyflow.analyze(**kwargs)  # type: ignore[arg-type]
    return str(caught.value)


@pytest.fixture
def state_dict(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "vgg.pt"
    torch.save(build_sample("digits_vgg").state_dict(), path)
    return path


def test_a_trace_failure_names_keywords_to_python_and_flags_to_the_cli(tmp_path):
    lib = library_error(TraceError, model="sample:digits_vgg", random_init=True, input_size=(3, 8, 8), hash_files=False)
    assert lib == (
        "forward pass on the meta device failed at input size 3x8x8 (RuntimeError: Invalid channel dimensions); "
        "pass input_size= matching the model, or trace=False to analyse without geometry"
    )
    flags = cli_error(
        "analyze", "sample:digits_vgg", "--random-init", "--input-size", "3x8x8", "--no-hash", "-o", tmp_path / "o"
    )
    assert flags == (
        "forward pass on the meta device failed at input size 3x8x8 (RuntimeError: Invalid channel dimensions); "
        "pass --input-size matching the model, or --no-trace to analyse without geometry"
    )
    assert "--" not in lib and not (tmp_path / "o").exists()


def test_a_bad_input_size(tmp_path):
    lib = library_error(OptionError, model="sample:digits_vgg", random_init=True, input_size=(0, 8))
    assert lib == "bad input_size '(0, 8)' (expected 1 to 5 positive sizes like 3x224x224)"
    flags = cli_error("analyze", "sample:digits_vgg", "--random-init", "--input-size", "0x8", "-o", tmp_path / "o")
    assert flags == "bad --input-size '0x8' (expected 1 to 5 positive sizes like 3x224x224)"


def test_an_architecture_where_none_applies_and_one_that_is_a_file(tmp_path, state_dict):
    lib = library_error(OptionError, model="sample:digits_vgg", arch="sample:digits_vgg")
    assert lib == "arch applies to state-dict files; for a zoo spec use weights=PATH"
    flags = cli_error("analyze", "sample:digits_vgg", "--arch", "sample:digits_vgg", "-o", tmp_path / "o")
    assert flags == "--arch applies to state-dict files; for a zoo spec use --weights PATH"

    lib = library_error(OptionError, model=str(state_dict), arch=str(state_dict), hash_files=False)
    assert lib == f"arch must be a torchvision:, timm: or sample: spec, not a file ({state_dict})"
    flags = cli_error("analyze", state_dict, "--arch", state_dict, "--no-hash", "-o", tmp_path / "o")
    assert flags == f"--arch must be a torchvision:, timm: or sample: spec, not a file ({state_dict})"


def test_random_init_without_a_model_shows_a_call_or_a_command_line(tmp_path):
    lib = library_error(OptionError, random_init=True)
    assert lib.startswith("random_init needs a model spec: ") and lib.endswith(
        'e.g. analyze("sample:digits_vgg", random_init=True)'
    )
    flags = cli_error("analyze", "--random-init", "-o", tmp_path / "o")
    assert flags.startswith("--random-init needs a model spec: ") and flags.endswith(
        "e.g. `entropyflow analyze sample:digits_vgg --random-init`"
    )


def test_the_spectral_budget_names_max_mem_and_the_estimator():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3))
    lib = library_error(
        BudgetError, model=conv, estimator="spectral", input_size=(1, 2000, 2000), max_mem=1 << 20, hash_files=False
    )
    assert lib.endswith(
        'more than the memory budget of 1 MiB: raise max_mem=, pass a smaller input_size=, or use estimator="paper"'
    )
    assert "--" not in lib


def test_the_cli_words_end_with_the_command(tmp_path, state_dict):
    assert words.caller() == "library"
    cli_error("analyze", "sample:digits_vgg", "--arch", "sample:digits_vgg", "-o", tmp_path / "o")  # fails: exit 2
    assert words.caller() == "library"
    r = CliRunner().invoke(app, ["analyze", str(state_dict), "--no-hash", "-o", str(tmp_path / "ok"), "-q"])
    assert r.exit_code == 0, r.stderr
    assert words.caller() == "library"  # a command that succeeded: the library's words again too
    lib = library_error(OptionError, model="sample:digits_vgg", random_init=True, input_size=(0, 8))
    assert lib.startswith("bad input_size '(0, 8)'")


def test_saved_notes_read_the_same_whoever_the_caller(tmp_path, state_dict):
    r = CliRunner().invoke(app, ["analyze", str(state_dict), "--no-hash", "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.stderr
    saved = json.loads((tmp_path / "out" / "analysis.json").read_text())
    result = entropyflow.analyze(str(state_dict), hash_files=False)
    assert list(result.notes) == [NO_ARCH, ORDER_NOTE]
    assert saved["notes"] == list(result.notes)
    assert all(NO_ARCH in layer.notes for layer in result.layers)
    untraced = entropyflow.analyze("sample:digits_vgg", random_init=True, trace=False, hash_files=False)
    assert "trace off: no geometry, totals unavailable" in untraced.notes
    texts = [*untraced.notes, *result.notes, *(n for layer in result.layers for n in layer.notes)]
    assert not [t for t in texts if "--" in t or "=" in t]  # no flag, no keyword


def test_arg_and_option_spell_both_ways():
    assert (words.arg("input-size"), words.arg("no-trace"), words.arg("max-gpu-mem")) == (
        "input_size=",
        "trace=False",
        "max_mem=",
    )
    assert words.arg("estimator", "paper") == 'estimator="paper"' and words.option("no-trace") == "trace"
    assert words.arg("weights", "PATH", quote=False) == "weights=PATH" and words.arg("seeds", 3) == "seeds=3"
    with words.speaking("cli"):
        assert words.caller() == "cli"
        assert (words.arg("input-size"), words.arg("no-trace"), words.arg("estimator", "paper")) == (
            "--input-size",
            "--no-trace",
            "--estimator paper",
        )
        assert words.option("stat") == "--stat" and words.say(cli="a", library="b") == "a"
    assert words.caller() == "library" and words.option("stat") == "statistic"
    with pytest.raises(ValueError, match="switch"):
        words.arg("no-trace", False)
    with pytest.raises(KeyError):
        words.arg("arch-typo")


def _called_names() -> set[tuple[str, int, str]]:
    """(file, line, name) of every arg("…") / option("…") call with a literal name in the package."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name | ast.Attribute)
                and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("arg", "option")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add((path.name, node.lineno, node.args[0].value))
    return found


def test_every_name_a_message_uses_is_in_the_table():
    called = _called_names()
    assert {name for _f, _l, name in called} >= {"input-size", "no-trace", "arch", "max-gpu-mem", "estimator"}
    assert [c for c in called if c[2] not in words.WORDS] == []


def test_the_table_holds_real_flags_and_real_keywords():
    from entropyflow.recommend.placement import RecommendOptions
    from entropyflow.report import ReportOptions
    from entropyflow.runs import analyze_to, track_to
    from entropyflow.sweep.events import RayOptions
    from entropyflow.sweep.runner import SweepRequest
    from entropyflow.track import ParallelOptions, TrackOptions

    command = typer.main.get_command(app)
    flags = {
        opt
        for sub in command.commands.values()  # type: ignore[attr-defined]
        for param in sub.params
        for opt in param.opts
    }
    keywords = {
        f.name
        for cls in (
            AnalyzeOptions,
            ReportOptions,
            TrackOptions,
            ParallelOptions,
            RecommendOptions,
            SweepRequest,
            RayOptions,
        )
        for f in dataclasses.fields(cls)
    } | {p for fn in (analyze_to, track_to) for p in inspect.signature(fn).parameters}
    assert [flag for flag, _k in words.WORDS.values() if flag not in flags] == []
    assert [k for _f, k in words.WORDS.values() if k.partition("=")[0] not in keywords] == []
    for name, (flag, keyword) in words.WORDS.items():
        assert flag == f"--{name}", name
        assert keyword.endswith(("=", "=True", "=False")), keyword


# --- the guard: no flag left in a library message -------------------------------------------------

FLAG = re.compile(r"(?<![\w-])--[a-z]")
#: modules that still hold flags in messages; their owners convert them and empty this list
NOT_YET_CONVERTED: set[str] = set()  # every module speaks the caller's words now


def _message_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of the string constants inside ``raise`` statements and inside functions that
    build messages (every function body, docstrings left out; comments are not in the tree)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):  # say(cli="--input …", library=…): the command line's own phrasing
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "say":
            docstrings |= {id(n) for kw in node.keywords if kw.arg == "cli" for n in ast.walk(kw.value)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise | ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str) and id(inner) not in docstrings:
                    found.add((inner.lineno, inner.value))
    return sorted(found)


#: another program's flags, in a command line the message shows (huggingface-cli download … --revision)
OTHER_PROGRAMS = {("load/hf_cache.py", " --revision ")}


def flags_in_library_messages() -> list[str]:
    hits = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cli/") or rel in NOT_YET_CONVERTED:
            continue
        for line, text in _message_strings(ast.parse(path.read_text(encoding="utf-8"))):
            if FLAG.search(text) and (rel, text) not in OTHER_PROGRAMS:
                hits.add(f"{rel}:{line}: {text[:60]!r}")
    return sorted(hits)


def test_no_library_message_names_a_flag():
    assert flags_in_library_messages() == []
    assert all((PACKAGE / rel).is_file() for rel in NOT_YET_CONVERTED)  # a moved module leaves the list


def test_the_guard_finds_a_flag_in_a_raise_and_not_in_a_docstring():
    tree = ast.parse(
        'def f():\n    """use --seeds"""\n    raise OptionError("--seeds must be at least 1")\nX = "--not-a-message"\n'
        'def g():\n    return say(cli="--seeds 3", library="seeds=3")\n'
    )
    assert [(line, text) for line, text in _message_strings(tree) if FLAG.search(text)] == [
        (3, "--seeds must be at least 1")
    ]


# --- converted messages, both ways ------------------------------------------------------------------


def test_compare_seeds_in_both_words():
    from entropyflow.compare import check_seeds
    from entropyflow.errors import OptionError as Opt

    with pytest.raises(Opt) as lib:
        check_seeds(None, 3)
    assert str(lib.value) == 'seeds needs compare="random"'
    with pytest.raises(Opt) as big:
        check_seeds("random", 2000)
    assert str(big.value).startswith("seeds 2,000 is more than 1000")
    with words.speaking("cli"), pytest.raises(Opt) as cli:
        check_seeds("sample:digits_vgg", 3)
    assert str(cli.value) == "--seeds applies to --compare random only"


def test_recommend_pre_skip_without_a_graph_in_both_words(tmp_path):
    from dataclasses import replace

    from entropyflow.recommend import RecommendOptions, recommend

    a = entropyflow.analyze("sample:digits_resnet", random_init=True, hash_files=False)
    blind = replace(a, model=replace(a.model, arch=None))
    with pytest.raises(OptionError) as lib:
        recommend(blind, RecommendOptions("pre-skip"))
    assert str(lib.value).endswith(": analyse with arch=, or use strategy first, empirical or largest-change")
    with words.speaking("cli"), pytest.raises(OptionError) as cli:
        recommend(blind, RecommendOptions("pre-skip"))
    assert str(cli.value).endswith(": analyse with --arch, or use --strategy first, empirical or largest-change")
    saved = recommend(blind).strategy.rationale  # auto saves why the graph is missing: no flag, no keyword
    with words.speaking("cli"):
        assert recommend(blind).strategy.rationale == saved
    assert "--" not in saved and "arch=" not in saved


def test_sweep_epochs_and_resources_in_both_words():
    from entropyflow.errors import OptionError as Opt
    from entropyflow.sweep.contract import ReportError, report_row
    from entropyflow.sweep.events import RayOptions

    with pytest.raises(Opt) as lib:
        RayOptions(cpus=2, cpus_per_trial=4)
    assert str(lib.value) == "cpus_per_trial=4 is more than cpus=2: no trial could start"
    with words.speaking("cli"), pytest.raises(Opt) as cli:
        RayOptions(cpus=2, cpus_per_trial=4)
    assert str(cli.value) == "--cpus-per-trial 4 is more than --cpus 2: no trial could start"
    with words.speaking("cli"), pytest.raises(ReportError) as saved:  # saved in a trial's record: neutral
        report_row(12, {}, None, 3)
    assert str(saved.value) == "report(epoch=12) is past the sweep's last epoch (3)"


def test_a_background_task_speaks_its_starters_words():
    from entropyflow import background

    with words.speaking("cli"):
        task = background.start(lambda _cancelled: words.caller(), "words-test")
    assert task.future.result(timeout=10) == "cli"
    assert background.start(lambda _c: words.caller(), "words-test").future.result(timeout=10) == "library"
