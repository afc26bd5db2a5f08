"""The pipeline is the import graph: every ``import`` in the package (module level or inside a
function, parsed from the source, not from a hand list) goes from a stage to the same stage or
an earlier one. docs/architecture.md draws the same picture."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "entropyflow"

# stage of every module (by its dotted name under entropyflow; a package's modules share its stage)
STAGES = [
    (
        "foundation",
        [
            "_version",
            "errors",
            "warn",
            "text",
            "background",
            "vocab",
            "spec",
            "extras",
            "strictjson",
            "atomic",
            "lossform",
            "words",
        ],
    ),
    ("samples", ["samples"]),
    ("load", ["load"]),
    ("walk", ["walk"]),
    ("estimate", ["estimate"]),
    ("report", ["report"]),
    ("analysis", ["analysis", "compare", "runs", "track", "raycluster"]),
    ("config", ["config"]),
    ("recommend", ["recommend"]),
    ("regularize", ["regularize"]),
    ("integrations", ["integrations", "sweep"]),
    ("cli", ["cli", "__main__", "__init__"]),
]
RANK = {module: rank for rank, (_, modules) in enumerate(STAGES) for module in modules}
STAGE_NAME = {rank: name for rank, (name, _) in enumerate(STAGES)}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def rank_of(name: str) -> int:
    head = name.split(".")[0]
    if head not in RANK:
        raise AssertionError(f"module entropyflow.{name} has no stage: add it to STAGES (and docs/architecture.md)")
    return RANK[head]


def imports(path: Path, root: Path = PACKAGE) -> list[tuple[str, int]]:
    """(imported module under entropyflow, line) for every import statement in the file (a file of
    the package, or of a copy of its layout under ``root``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - node.level + 1] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
                targets = [target] if node.module else [f"{target}.{a.name}".strip(".") for a in node.names]
            elif node.module and node.module.split(".")[0] == "entropyflow":
                rest = node.module.split(".", 1)[1] if "." in node.module else ""
                targets = [rest] if rest else [a.name for a in node.names]
            else:
                continue
            out += [(_module_of(t), node.lineno) for t in targets if t]
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".", 1)[1], node.lineno) for a in node.names if a.name.startswith("entropyflow.")]
    return out


def _module_of(dotted: str) -> str:
    """``from pkg import name``: ``pkg.name`` if that is a module, else ``pkg`` (an attribute)."""
    path = PACKAGE.joinpath(*dotted.split("."))
    if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
        return dotted
    return dotted.rpartition(".")[0] or "__init__"


def test_no_import_runs_back_up_the_pipeline():
    back = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        if source == "__init__":
            continue  # the package's lazy public names
        for target, line in imports(path):
            if rank_of(target) > rank_of(source):
                back.append(
                    f"entropyflow/{path.relative_to(PACKAGE)}:{line}: {STAGE_NAME[rank_of(source)]} imports "
                    f"{STAGE_NAME[rank_of(target)]} (entropyflow.{target})"
                )
    assert not back, "imports from a later stage:\n" + "\n".join(back)


def test_the_checker_sees_function_local_and_relative_imports(tmp_path):
    """The parser itself: a back-edge hidden in a function is still an edge (the probe module sits
    in a copy of the layout under tmp_path, never in the package)."""
    root = tmp_path / "entropyflow"
    probe = root / "load" / "_probe_for_test.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..report import html\n    from .. import regularize\n")
    assert imports(probe, root) == [("report", 2), ("regularize", 3)]
    assert rank_of("report") > rank_of(module_name(probe, root))


def test_every_module_has_a_stage():
    for path in PACKAGE.rglob("*.py"):
        rank_of(module_name(path))
