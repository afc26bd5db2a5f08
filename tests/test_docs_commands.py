"""Every documented command runs as written (issue 25, "Docs that fail as written").

The commands are read from the docs themselves: each line starting with ``entropyflow `` in a
```bash block of README.md and docs/*.md (continuation lines joined, the trailing comment
dropped), and each ``python docs/examples/...`` invocation there and in the examples' own
docstrings. Each one has a stand-in below (files of the named kind generated in a temporary
folder, which is the working directory); a command the table does not know fails
``test_every_documented_command_has_a_stand_in``, so a new or changed doc line gets one.

How each is run:

* ``cli``: the command line as written, through the real typer app, in the temporary folder; it
  must exit with the code given (0, or 2 where the docs' own subject is a cache that the test
  empties: the command must then say so in one line, and never download).
* ``grid``: ``sweep`` up to its grid, with the real argument parsing and grid building, then each
  placement's first epoch of the training function in this process (no Ray): a placement that
  cannot be placed on the model fails here, as it would in every trial.
* ``example``: a docs/examples script run by its absolute path from the temporary folder (so not
  from the repository root), with caps on its length appended where the doc's run is long.
* ``skip``: a placeholder (``...``) or something no stand-in can give; the reason is in the id.

The README quick-start output block is compared with the real output of ``entropyflow analyze``.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import typer
from torch.optim.optimizer import register_optimizer_step_post_hook
from typer.testing import CliRunner

from entropyflow.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
EXAMPLES = REPO / "docs" / "examples"
SEEDS_PY = EXAMPLES / "sweep_train.py"


# ---------------------------------------------------------------------------------------------
# extraction


def _joined(lines: list[str]) -> list[str]:
    out: list[str] = []
    buf = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1].strip() + " "
            continue
        out.append((buf + line.strip()).strip())
        buf = ""
    return out


def _command(line: str) -> str:
    """The command without its trailing ``# comment``, whitespace collapsed."""
    lexer = shlex.shlex(line, posix=False)  # quotes kept as written
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return " ".join(lexer)


def doc_commands() -> dict[str, list[str]]:
    """command → the files that give it."""
    found: dict[str, list[str]] = {}

    def add(command: str, where: str) -> None:
        found.setdefault(command, [])
        if where not in found[command]:
            found[command].append(where)

    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if block.group(1) not in ("bash", "sh", "shell", "console"):
                continue
            for line in _joined(block.group(2).splitlines()):
                if line.startswith("entropyflow ") or line.startswith("python docs/examples/"):
                    add(_command(line), path.relative_to(REPO).as_posix())
    for path in sorted(EXAMPLES.glob("*.py")):
        doc = path.read_text(encoding="utf-8").split('"""')[1]
        for line in _joined(doc.splitlines()):
            if line.startswith("entropyflow ") or line.startswith("python docs/examples/"):
                add(_command(line), path.relative_to(REPO).as_posix())
    return found


# ---------------------------------------------------------------------------------------------
# the stand-ins


@dataclass(frozen=True)
class Case:
    how: str  # cli | grid | example | skip
    needs: tuple[str, ...] = ()  # files made in the working folder first (see make())
    code: int = 0  # the exit code the command must give
    says: str = ""  # on stderr, for a non-zero code
    swap: tuple[tuple[str, str], ...] = ()  # stand-in words for something too big to run here
    extra: tuple[str, ...] = ()  # appended arguments (caps on a long example)
    why: str = ""  # in the test id
    slow: bool = False


NOT_CACHED = Case("cli", code=2, says="are not cached", why="torch hub cache emptied: exit 2, never downloads")
NOT_IN_HF = Case("cli", code=2, says="not in the local Hugging Face cache", why="HF cache emptied: exit 2")
ELLIPSIS = Case("skip", why="'...' stands for the sweep above; needs a Ray cluster or an interrupted sweep")

CASES: dict[str, Case] = {
    # README: usage
    "entropyflow analyze model.pt": Case("cli", ("model.pt",)),
    "entropyflow analyze weights.safetensors": Case("cli", ("weights.safetensors",)),
    "entropyflow analyze torchvision:vgg16": NOT_CACHED,
    "entropyflow analyze timm:resnet50 --random-init --seed 0": Case("cli"),
    "entropyflow analyze torchvision:vgg16 --random-init --estimator spectral --device auto": Case(
        "cli",
        swap=(("torchvision:vgg16", "sample:digits_vgg"),),
        why="vgg16 as sample:digits_vgg: vgg16's dense svdvals take ~4 min",
    ),
    "entropyflow analyze model.pt --arch torchvision:resnet50 --input-size 3x224x224": Case(
        "cli", ("resnet50.pt",), swap=(("model.pt", "resnet50.pt"),)
    ),
    "entropyflow analyze sample:digits_unet": Case("cli"),
    "entropyflow analyze ./my-llama/": Case("cli", ("my-llama",)),
    "entropyflow analyze hf:openai-community/gpt2 --input long:1x256": NOT_IN_HF,
    "entropyflow analyze --compare random": Case("cli"),
    "entropyflow analyze model.pt --format json > a.json": Case("cli", ("model.pt",)),
    "entropyflow track 'ckpts/*.ckpt'": Case("cli", ("ckpts/lightning",)),
    r"entropyflow track 'ckpts/epoch_*.pt' --labels 'epoch_(\d+)'": Case("cli", ("ckpts/epoch_N",)),
    "entropyflow compare a/analysis.json b/analysis.json": Case("cli", ("a/analysis.json", "b/analysis.json")),
    "entropyflow recommend entropyflow-report/analysis.json -o lambda.yaml": Case(
        "cli", ("entropyflow-report/analysis.json",)
    ),
    "entropyflow recommend torchvision:vgg16 --strategy first -o lambda.yaml": NOT_CACHED,
    "entropyflow recommend model.pt --arch timm:resnet50 --strategy auto --lambda 1e-3 -o lambda.json": Case(
        "cli", ("timm_resnet50.pt",), swap=(("model.pt", "timm_resnet50.pt"),)
    ),
    "entropyflow sweep mytrain:train --config lambda.yaml --lambdas 0,1e-4,1e-3,1e-2 --placements "
    "first,all,empirical --reference ref/analysis.json --seeds 10 --epochs 30 --metric val_loss --mode min "
    "--target 0.05 -o sweep-report/": Case("grid", ("mytrain.py", "lambda.yaml", "ref/analysis.json")),
    "entropyflow sweep ... --address ray://head:10001": ELLIPSIS,
    "entropyflow sweep --task digits-autoencoder": Case("grid"),
    # docs/figures.md
    "entropyflow analyze sample_models/digits_resnet.pt --estimator spectral --compare random --seeds 5": Case(
        "cli", ("sample_models",)
    ),
    # docs/formats.md
    "entropyflow analyze ./my-finetuned-llama": Case("cli", ("my-finetuned-llama",)),
    "entropyflow analyze hf:openai-community/gpt2": NOT_IN_HF,
    "entropyflow analyze hf:meta-llama/Llama-3.2-1B@main --input long:1x256": NOT_IN_HF,
    "entropyflow analyze hf:google-bert/bert-base-uncased --compare random --seeds 5": NOT_IN_HF,
    # docs/reproduction.md
    "entropyflow sweep --task digits-autoencoder --seeds 10 -o ae": Case("grid"),
    "entropyflow sweep --task digits-cnn --seeds 20 -o cnn": Case("grid"),
    "entropyflow sweep --task digits-unet --seeds 10 -o unet": Case("grid"),
    # docs/training.md and the examples' docstrings
    "entropyflow analyze torchvision:resnet50 -o ref/": NOT_CACHED,
    "entropyflow recommend ref/analysis.json -o lambda.yaml": Case("cli", ("ref/analysis.json",)),
    "entropyflow recommend sample:digits_vgg --strategy first -o lambda.yaml": Case("cli"),
    "python docs/examples/plain_loop.py --config lambda.yaml --epochs 10 --out runs/plain": Case(
        "example", ("lambda.yaml",), extra=("--max-steps", "2"), why="2 batches an epoch"
    ),
    "python docs/examples/lightning_digits.py --config lambda.yaml --epochs 10 --out runs/lightning": Case(
        "example", ("lambda.yaml",), extra=("--max-steps", "4"), why="4 steps"
    ),
    "entropyflow recommend my-model-folder/ --strategy first --input long:1x128 -o lambda.yaml": Case(
        "cli", ("my-model-folder",)
    ),
    "python docs/examples/hf_trainer.py --out runs/hf": Case("example", extra=("--steps", "2"), why="2 steps"),
    "entropyflow sweep docs/examples/sweep_train.py:train --reference sample:digits_vgg --placements first,all "
    "--lambdas 0,1e-3,1e-2 --seeds 10 --epochs 20 --metric val_acc --mode max -o sweep-report/": Case(
        "grid", ("docs",)
    ),
    "entropyflow sweep mytrain:train --placements first,dense-first --lambdas 0,1e-3 --seeds 10 --epochs 20 "
    "--metric val_loss -o sweep-report/": Case("grid", ("mytrain.py",)),
    "entropyflow sweep mytrain:train --config lambda.yaml --lambdas 0,1e-4,1e-3 --seeds 10 --epochs 30 "
    "--metric val_loss --target 0.05 --patience 7 -o sweep-report/": Case("grid", ("mytrain.py", "lambda.yaml")),
    "entropyflow sweep ... --address ray://head:10001 --working-dir .": ELLIPSIS,
    "entropyflow sweep ... -o sweep-report/ --resume": ELLIPSIS,
    "python docs/examples/train_digits.py --out runs/": Case(
        "example", extra=("--epochs", "1", "--seeds", "1", "--max-steps", "2"), why="1 epoch, 1 seed, 2 steps"
    ),
    "python docs/examples/train_digits.py": Case(
        "example", extra=("--epochs", "1", "--seeds", "1", "--max-steps", "2"), why="1 epoch, 1 seed, 2 steps"
    ),
    "python docs/examples/train_digits.py --lambda 1e-2 --out runs/": Case(
        "example", extra=("--epochs", "1", "--seeds", "1", "--max-steps", "2"), why="1 epoch, 1 seed, 2 steps"
    ),
}


def _id(command: str) -> str:
    case = CASES[command]
    words = command if len(command) <= 90 else command[:87] + "..."
    return f"{words} [{case.how}{': ' + case.why if case.why else ''}]"


# ---------------------------------------------------------------------------------------------
# stand-in files


def _lightning(path: Path, seed: int, epoch: int, step: int) -> None:
    from entropyflow.samples import build_sample

    torch.manual_seed(seed)
    state = {f"model.{k}": v for k, v in build_sample("digits_vgg").state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "global_step": step, "pytorch-lightning_version": "2.4.0", "state_dict": state}, path)


def _hf_folder(path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files that take a while to make, made once: zoo state dicts, an HF folder, analyses."""
    return tmp_path_factory.mktemp("standins")


def _stored(store: Path, name: str) -> Path:
    """The file ``name`` in ``store``, made on first use."""
    path = store / name
    if path.exists():
        return path
    import entropyflow
    from entropyflow.samples import build_sample

    if name == "resnet50.pt":
        import torchvision

        torch.save(torchvision.models.resnet50().state_dict(), path)
    elif name == "timm_resnet50.pt":
        import timm

        torch.save(timm.create_model("resnet50").state_dict(), path)
    elif name == "hf":
        _hf_folder(path)
    elif name == "model.pt":
        torch.manual_seed(1)
        torch.save(build_sample("digits_vgg").state_dict(), path)
    elif name == "trained/analysis.json":
        assert _invoke(["analyze", "sample:digits_vgg", "-q", "--no-plot", "-o", str(path.parent)]).exit_code == 0
    elif name == "random/analysis.json":
        random = ["--random-init", "--seed", "3", "-q", "--no-plot"]
        assert _invoke(["analyze", "sample:digits_vgg", *random, "-o", str(path.parent)]).exit_code == 0
    elif name == "lambda.yaml":
        from entropyflow.config import save_config
        from entropyflow.recommend import RecommendOptions, recommend

        save_config(recommend(entropyflow.analyze("sample:digits_vgg"), RecommendOptions(strategy="first")), path)
    else:
        raise AssertionError(f"no stand-in for {name}")
    return path


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=target.is_dir())


def make(need: str, cwd: Path, store: Path) -> None:
    if need in ("model.pt", "resnet50.pt", "timm_resnet50.pt", "lambda.yaml"):
        _link(_stored(store, need), cwd / need)
    elif need == "weights.safetensors":
        from safetensors.torch import save_file

        from entropyflow.samples import build_sample

        save_file(build_sample("digits_vgg").state_dict(), cwd / need)
    elif need in ("my-llama", "my-finetuned-llama", "my-model-folder"):
        _link(_stored(store, "hf"), cwd / need)
    elif need == "ckpts/lightning":  # Lightning's ModelCheckpoint names
        for epoch in range(3):
            _lightning(cwd / "ckpts" / f"epoch={epoch}-step={23 * (epoch + 1)}.ckpt", epoch, epoch, 23 * (epoch + 1))
    elif need == "ckpts/epoch_N":
        for epoch in (1, 2, 10):
            _lightning(cwd / "ckpts" / f"epoch_{epoch}.pt", epoch, epoch, 0)
    elif need in ("a/analysis.json", "entropyflow-report/analysis.json", "ref/analysis.json"):
        _link(_stored(store, "trained/analysis.json").parent, cwd / Path(need).parent)
    elif need == "b/analysis.json":
        _link(_stored(store, "random/analysis.json").parent, cwd / "b")
    elif need == "mytrain.py":  # a plain CNN (digits_vgg) under the contract: the docs' example
        (cwd / need).write_text(SEEDS_PY.read_text(encoding="utf-8"), encoding="utf-8")
    elif need in ("sample_models", "docs"):
        _link(REPO / need, cwd / need)
    else:
        raise AssertionError(f"no stand-in for {need}")


# ---------------------------------------------------------------------------------------------
# the tests


def test_every_documented_command_has_a_stand_in() -> None:
    found = doc_commands()
    missing = {c: where for c, where in found.items() if c not in CASES}
    assert not missing, f"documented commands without a stand-in in this test: {missing}"
    stale = sorted(set(CASES) - set(found))
    assert not stale, f"stand-ins for commands no doc gives any more: {stale}"


def test_the_fixed_readme_lines_are_the_ones_extracted() -> None:
    """The two README lines issue 25 found failing are gone, and their replacements are tested."""
    found = doc_commands()
    readme = {c for c, where in found.items() if "README.md" in where}
    assert not any("pre-skip" in c for c in readme if c.startswith("entropyflow sweep"))
    assert not any("'ckpts/epoch_*.ckpt' --labels 'epoch=" in c for c in readme)
    assert "entropyflow track 'ckpts/*.ckpt'" in readme


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty torch hub cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # an empty Hugging Face cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cwd


def _argv(command: str, case: Case) -> tuple[list[str], str | None]:
    for old, new in case.swap:
        command = command.replace(old, new)
    argv = shlex.split(command)
    redirect = None
    if ">" in argv:
        at = argv.index(">")
        redirect, argv = argv[at + 1], argv[:at]
    return argv, redirect


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args, prog_name="entropyflow")


def _check_cli(command: str, case: Case, cwd: Path) -> None:
    argv, redirect = _argv(command, case)
    result = _invoke(argv[1:])
    detail = f"{command}\nexit {result.exit_code}\nstderr: {result.stderr[-1500:]}"
    assert result.exit_code == case.code, detail
    if case.code:
        assert case.says in result.stderr, detail
        assert len(result.stderr.strip().splitlines()) == 1, detail  # one line, no traceback
        return
    if redirect is not None:  # --format json > a.json: the analysis on stdout
        (cwd / redirect).write_text(result.stdout, encoding="utf-8")
        data = json.loads((cwd / redirect).read_text(encoding="utf-8"))
        names = sorted(layer["name"] for layer in data["layers"])  # a bare state dict: digits_vgg's six layers
        assert names == ["classifier.1", "classifier.3", "features.0", "features.2", "features.5", "features.7"]
        return
    out = re.search(r"(?:-o|--out) (\S+)", command)
    if argv[1] in ("analyze", "compare", "track"):
        folder = cwd / (out.group(1) if out else f"entropyflow-{'report' if argv[1] == 'analyze' else argv[1]}")
        assert folder.is_dir() and any(folder.iterdir()), detail
    elif argv[1] == "recommend":
        assert (cwd / out.group(1)).stat().st_size > 0, detail  # type: ignore[union-attr]
    if argv[1] == "track":
        labels = (cwd / "entropyflow-track" / "checkpoints.csv").read_text(encoding="utf-8").splitlines()
        firsts = [row.split(",")[0] for row in labels[1:]]
        # Lightning's names are labelled by their step; --labels 'epoch_(\d+)' by the regex's group
        assert firsts == (["23", "46", "69"] if "--labels" not in command else ["1", "2", "10"]), labels


class _Stop(Exception):
    pass


def _check_grid(command: str, case: Case, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sweep`` up to Ray: the real parsing and grid, then one epoch of each placement's first trial."""
    pytest.importorskip("ray")
    import entropyflow.sweep.contract as contract
    import entropyflow.sweep.runner as runner
    from entropyflow.sweep.tasks import train_function

    seen: dict = {}

    def grid_only(train, spec, **kwargs):
        seen.update(train=train, spec=spec, out=kwargs["out"])
        raise typer.Exit(0)

    monkeypatch.setattr(runner, "run_sweep", grid_only)
    argv, _ = _argv(command, case)
    result = _invoke(argv[1:])
    assert result.exit_code == 0 and seen, f"{command}\nexit {result.exit_code}\nstderr: {result.stderr[-1500:]}"
    spec = seen["spec"]
    seeds = re.search(r"--seeds (\d+)", command)
    if seeds:
        assert len(spec.seeds) == int(seeds.group(1))
    lambdas = re.search(r"--lambdas (\S+)", command)
    if lambdas:
        assert sorted(spec.lambdas) == sorted(float(v) for v in lambdas.group(1).split(","))
    placements = re.search(r"--placements (\S+)", command)
    if placements:
        named = [p.name for p in spec.placements]
        assert all(any(n.startswith(p) for n in named) for p in placements.group(1).split(",")), named
    sys.modules.pop("mytrain", None)
    train = train_function(seen["train"], str(cwd))

    def stop(*_args: object) -> None:  # after the first optimiser step: model, placement, loss, backward all ran
        raise _Stop

    hook = register_optimizer_step_post_hook(stop)
    try:
        baseline = next(c for c in spec.cells if c.entropy is None)
        lam = min(v for v in spec.lambdas if v > 0)
        cells = [baseline] + [c for c in spec.cells if c.entropy is not None and c.lam == lam]
        assert len(cells) == 1 + len(spec.placements)
        for cell in cells:
            contract.placed.clear()
            with pytest.raises(_Stop):
                train(cell.trial_config(spec.seeds[0], 1, spec.params), lambda **_: None)
            if cell.entropy is not None:  # the placement found layers on the model the function built
                assert contract.placed and contract.placed[0]["layers"], cell.name
    finally:
        hook.remove()
        sys.modules.pop("mytrain", None)


def _check_example(command: str, case: Case, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run by its absolute path from a folder that is not the repository root."""
    argv = shlex.split(command)
    script = (REPO / argv[1]).resolve()
    assert not (cwd / "docs").exists()
    if "lightning" in script.name:
        pytest.importorskip("lightning")
    if "hf_trainer" in script.name:
        pytest.importorskip("transformers")
    monkeypatch.setattr(sys, "argv", [str(script), *argv[2:], *case.extra])
    runpy.run_path(str(script), run_name="__main__")
    out = re.search(r"--out (\S+)", command)
    folder = cwd / (out.group(1) if out else ".")
    assert folder.is_dir() and any(folder.iterdir())


COMMANDS = sorted(CASES)


@pytest.mark.parametrize(
    "command",
    [pytest.param(c, id=_id(c), marks=[pytest.mark.slow] if CASES[c].slow else []) for c in COMMANDS],
)
def test_documented_command_runs(command: str, workdir: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[command]
    if case.how == "skip":
        pytest.skip(case.why)
    for need in case.needs:
        make(need, workdir, store)
    if case.how == "cli":
        _check_cli(command, case, workdir)
    elif case.how == "grid":
        _check_grid(command, case, workdir, monkeypatch)
    else:
        _check_example(command, case, workdir, monkeypatch)


def test_the_old_readme_sweep_grid_fails_on_a_plain_cnn(workdir: Path, store: Path) -> None:
    """Why the README's grid changed: pre-skip has nothing to place on a CNN without skips."""
    pytest.importorskip("ray")
    for need in ("mytrain.py", "lambda.yaml", "ref/analysis.json"):
        make(need, workdir, store)
    result = _invoke(
        shlex.split(
            "sweep mytrain:train --config lambda.yaml --lambdas 0,1e-4,1e-3,1e-2 --placements first,pre-skip,empirical "
            "--reference ref/analysis.json --seeds 10 --epochs 30 --metric val_loss --mode min --target 0.05 "
            "-o sweep-report/"
        )
    )
    assert result.exit_code == 2 and "pre-skip" in result.stderr, result.stderr


def test_the_old_readme_track_line_fails_on_lightning_names(workdir: Path, store: Path) -> None:
    """Why the README's track line changed: Lightning writes epoch=3-step=1200.ckpt, which
    'ckpts/epoch_*.ckpt' does not match (exit 2, one line)."""
    make("ckpts/lightning", workdir, store)
    result = _invoke(["track", "ckpts/epoch_*.ckpt", "--labels", r"epoch=(\d+)"])
    assert result.exit_code == 2 and "no files match" in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------
# the README quick-start output


def _quick_start_block() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    at = text.index("`entropyflow analyze` with no argument")
    block = re.search(r"^```\n(.*?)^```", text[at:], re.S | re.M)
    assert block is not None
    return block.group(1).splitlines()


NUMBER = re.compile(r"^[−-]?\d+(\.\d+)?$")


def _normalised(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = re.sub(r"^entropyflow \S*/sample_models/", "entropyflow …/sample_models/", line.rstrip())
        line = re.sub(r"device (cpu|cuda(:\d+)?|mps)", "device cpu", line)  # --device auto: this machine's
        out.append(line)
    return out


def _same_token(doc: str, real: str) -> bool:
    if NUMBER.match(doc) and NUMBER.match(real):
        decimals = len(doc.partition(".")[2])
        value = float(doc.replace("−", "-"))
        return abs(value - float(real.replace("−", "-"))) <= 2 * 10**-decimals
    return doc == real


def test_readme_quick_start_output_is_the_real_output(tmp_path: Path) -> None:
    """`entropyflow analyze`, run as a user runs it (piped here), prints the README's block: the
    same header, rows, columns and notes; numbers within 2 in their last printed digit."""
    exe = Path(sys.executable).with_name("entropyflow")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # as in a plain shell
    real = subprocess.run([str(exe), "analyze"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert real.returncode == 0, real.stderr
    doc, got = _normalised(_quick_start_block()), _normalised(real.stdout.splitlines())
    assert len(doc) == len(got), "\n".join(got)
    for want, have in zip(doc, got, strict=True):
        assert len(want.split()) == len(have.split()), f"\nREADME: {want}\nreal:   {have}"
        assert all(_same_token(a, b) for a, b in zip(want.split(), have.split(), strict=True)), (
            f"\nREADME: {want}\nreal:   {have}"
        )
    header = next(line for line in got if line.startswith("#  layer"))
    assert header.split()[1:] == ["layer", "kind", "filters", "mean", "profile", "mean", "median", "Q1", "Q3", "total",
                                  "exact"]  # fmt: skip
    assert (tmp_path / "entropyflow-report" / "report.html").is_file()


def test_quick_start_comparison_can_fail() -> None:
    """The token comparison catches a changed number, a missing column and a missing note."""
    doc = _normalised(_quick_start_block())
    row = next(line for line in doc if line.startswith("1  features.0"))
    assert all(_same_token(a, b) for a, b in zip(row.split(), row.split(), strict=True))
    changed = row.replace("−2.067", "−2.071")
    assert not all(_same_token(a, b) for a, b in zip(row.split(), changed.split(), strict=True))
    assert _same_token("−2.067", "−2.068") and not _same_token("−2116.8", "−2117.2")
    assert any(line.startswith("note: weights read from") for line in doc)


@pytest.mark.slow
def test_one_documented_sweep_runs_on_ray(tmp_path: Path) -> None:
    """docs/training.md's sweep of docs/examples/sweep_train.py, as written, with a pilot's caps
    appended (2 seeds, 1 epoch, 2 CPUs): a real local Ray run, exit 0, every trial in trials.csv."""
    pytest.importorskip("ray")
    command = next(c for c in CASES if c.startswith("entropyflow sweep docs/examples/sweep_train.py:train"))
    (tmp_path / "docs").symlink_to(REPO / "docs", target_is_directory=True)
    exe = Path(sys.executable).with_name("entropyflow")
    argv = [str(exe), *shlex.split(command)[1:], "--seeds", "2", "--max-epochs", "1", "--cpus", "2"]
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = (tmp_path / "sweep-report" / "trials.csv").read_text(encoding="utf-8").splitlines()
    # λ 0 once, and 1e-3, 1e-2 on first and all: 5 cells × 2 seeds
    assert len(rows) - 1 == 5 * 2, rows
    summary = json.loads((tmp_path / "sweep-report" / "summary.json").read_text(encoding="utf-8"))
    assert summary


def test_config_md_example_is_what_recommend_writes(tmp_path: Path) -> None:
    """docs/config.md's example config is `entropyflow recommend sample:digits_resnet`'s file, field
    by field (its creation time and the rest of the rationale, cut with '...', aside)."""
    import yaml

    text = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    at = text.index("`entropyflow recommend sample:digits_resnet -o lambda.yaml`")
    block = re.search(r"^```yaml\n(.*?)^```", text[at:], re.S | re.M)
    assert block is not None
    doc = yaml.safe_load(block.group(1))
    out = tmp_path / "lambda.yaml"
    result = _invoke(["recommend", "sample:digits_resnet", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    real = yaml.safe_load(out.read_text(encoding="utf-8"))
    for cfg in (doc, real):
        del cfg["provenance"]["created"]
    head = doc["strategy"].pop("rationale")
    assert head.endswith("...") and real["strategy"].pop("rationale").startswith(head[:-3].rstrip())
    assert doc == real
