"""The docs' Python API examples run: every fenced ``python`` block of docs/cli.md's "From Python"
section and README.md that needs neither Ray nor the network, executed in a temporary folder with
small models standing in for the big ones (names swapped in the source, nothing else)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import entropyflow
from entropyflow.recommend import RecommendOptions, recommend, save_config
from entropyflow.samples import build_sample

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
# the docs name real models; the tests run the bundled sample's architecture and its layers
SMALL = {
    '"timm:resnet50"': '"sample:digits_resnet"',
    '"torchvision:vgg16"': '"sample:digits_vgg"',
    '"layer1.0.conv1"': '"layer1.conv1"',
    "input_size=(3, 224, 224)": "input_size=(1, 8, 8)",
}


def blocks(doc: str, section: str | None = None) -> list[str]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    if section is not None:
        start = text.index(section)
        end = text.find("\n## ", start + len(section))
        text = text[start : end if end >= 0 else None]
    return BLOCK.findall(text)


def small(code: str) -> str:
    for big, little in SMALL.items():
        code = code.replace(big, little)
    return code


def namespace(sample: str = "digits_resnet") -> dict[str, object]:
    """What the examples take as given: a model of a sample's architecture (with residual additions,
    for pre-skip), a batch, a loss."""
    torch.manual_seed(0)
    model = build_sample(sample)
    return {
        "my_module": model,
        "model": model,
        "criterion": nn.CrossEntropyLoss(),
        "x": torch.randn(4, 1, 8, 8),
        "y": torch.tensor([0, 1, 2, 3]),
    }


def run(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.chdir(tmp_path)
    scope = namespace()
    exec(compile(small(code), "<docs>", "exec"), scope)  # noqa: S102 - the repository's own docs
    return scope


@pytest.mark.slow
def test_cli_md_python_api_runs(tmp_path, monkeypatch):
    (code,) = blocks("docs/cli.md", "## From Python")
    scope = run(code, tmp_path, monkeypatch)
    assert isinstance(scope["result"], entropyflow.AnalysisResult)
    assert (tmp_path / "out" / "analysis.json").is_file() and (tmp_path / "lambda.yaml").is_file()
    assert scope["png"][:4] == b"\x89PNG" and torch.isfinite(scope["loss"])


def test_readme_python_examples_run(tmp_path, monkeypatch):
    analyse, regularize = blocks("README.md")
    scope = run(analyse, tmp_path, monkeypatch)
    assert len(scope["layers"]) == len(scope["result"].layers)  # type: ignore[attr-defined]
    model = namespace()["model"]
    assert isinstance(model, nn.Module)
    cfg = recommend(entropyflow.analyze(model, input_size=(1, 8, 8)), RecommendOptions(strategy="first"))
    save_config(cfg, tmp_path / "lambda.yaml")
    scope = run(regularize, tmp_path, monkeypatch)
    assert torch.isfinite(scope["loss"])  # type: ignore[arg-type]


def test_the_documented_signatures_are_the_real_ones():
    """docs/cli.md lists each run's parameters; they are the functions' own, in their order, and
    everything after the bare ``*`` is keyword-only."""
    from entropyflow.recommend.source import recommend_to
    from entropyflow.runs import analyze_to, compare_to, track_to

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    text = text[text.index("### The signatures") :]
    for fn in (entropyflow.analyze, analyze_to, track_to, compare_to, recommend_to):
        documented = re.search(rf"\b{fn.__name__}\((.*?)\) ->", text, re.DOTALL)
        assert documented, fn.__name__
        doc = re.sub(r"#.*", "", documented.group(1))  # the comments' words are not parameters
        params = list(inspect.signature(fn).parameters.values())
        at = [re.search(rf"(?<![\w.]){p.name}(?=\s*[:=,]|\s*$)", doc, re.MULTILINE) for p in params]
        assert all(at), (fn.__name__, [p.name for p, m in zip(params, at, strict=True) if not m])
        starts = [m.start() for m in at if m]
        assert starts == sorted(starts), fn.__name__
        star = doc.index("*")
        assert all((p.kind is p.KEYWORD_ONLY) == (s > star) for p, s in zip(params, starts, strict=True)), fn.__name__
