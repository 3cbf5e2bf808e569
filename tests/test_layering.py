"""The package's import graph, read from the source (ast, every import including those inside
functions): lower layers never import higher ones, nothing but __main__ imports the CLI, and no
two modules import each other, directly or round a longer loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gancraft"

# each top-level module or subpackage of gancraft, lowest first; one may import its own layer and those below
LAYERS = (
    {"errors", "io_util", "runtime", "distributed", "registry"},
    {"nets", "media", "toy"},
    # the package root only imports checkpoint (lazily, for `gancraft.load`)
    {"checkpoint", "gancraft"},
    {"latent", "metrics", "merge"},
    {"train"},
    {"cli"},
    {"__main__"},
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports. `from X import name` counts as importing
    X.name where that is a module; edges into the root package are left out, since Python runs
    the root's __init__ before any of its modules anyway."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets.update(
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source for alias in node.names
                )
        graph[name] = {t for t in targets if t in files and t != root.name and t != name}
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if layer(a) != layer(b) and RANK[layer(b)] > RANK[layer(a)]
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import loops: Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    assert {layer(m) for m in import_graph(PACKAGE)} <= set(RANK)


def test_no_upward_imports():
    assert upward_imports(import_graph(PACKAGE)) == []


def test_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("line", "target"),
    [
        ("from ..train.loop import run", "train.loop"),
        ("from ..train import loop", "train.loop"),
        ("import gancraft.train.loop", "train.loop"),
        ("from ..cli import main", "cli.main"),
        ("from .. import cli", "cli"),
    ],
)
def test_an_upward_import_is_caught(tmp_path, line, target):
    # the rule in miniature, with one import that breaks it, inside a function
    root = _write(
        tmp_path / "gancraft",
        {
            "__init__.py": "",
            "errors.py": "",
            "nets/__init__.py": "",
            "nets/ops.py": f"from ..errors import x\n\ndef f():\n    {line}\n",
            "train/__init__.py": "",
            "train/loop.py": "from ..nets.ops import f\n",
            "cli/__init__.py": "",
            "cli/main.py": "from ..train.loop import run\n",
        },
    )
    assert upward_imports(import_graph(root)) == [f"gancraft.nets.ops -> gancraft.{target}"]


def test_a_cycle_is_caught(tmp_path):
    root = _write(
        tmp_path / "gancraft",
        {
            "__init__.py": "",
            "latent/__init__.py": "",
            "latent/seeds.py": "",
            "latent/domains.py": "from .seeds import z\n\ndef f():\n    from .generate import g\n",
            "latent/generate.py": "from .domains import f\n",
        },
    )
    assert cycles(import_graph(root)) == [["gancraft.latent.domains", "gancraft.latent.generate"]]
