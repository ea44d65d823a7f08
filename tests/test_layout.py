"""The package layout holds: no import circles, folders import only downwards, nothing private
crosses a folder boundary, and the core imports neither framework.

Every ``import`` counts, including the ones inside functions: a lazy import that breaks a circle at
run time still ties two concerns together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "src" / "openvino_llm"
ADAPTERS = (ROOT / "integrations" / "langchain_openvino", ROOT / "integrations" / "llama_index_openvino")

# A folder may import from its own rank and the ranks below it, never above.
RANKS = {
    "errors": 0,
    "types": 1,
    "devices": 2,
    "models": 3,
    "chat": 4,
    "engine": 5,
    "retrieval": 5,
    "serve": 6,
    "bench": 6,
    "cli": 7,
    "__init__": 7,
    "__main__": 7,
}


def _module_name(path: Path, root: Path, package: str) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(p, root, root.name): p for p in sorted(root.rglob("*.py"))}


def _imports(path: Path, module: str) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in the file."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name, node.lineno


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, name, _ in _imports(path, module):
            if name and f"{target}.{name}" in modules:
                graph[module].add(f"{target}.{name}")
            elif target in modules:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _folder(module: str) -> str:
    """The top-level concern a core module belongs to: ``openvino_llm.models.gguf`` -> ``models``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


ALL = {**_modules(CORE), **{m: p for root in ADAPTERS for m, p in _modules(root).items()}}


def test_no_import_circles() -> None:
    assert _cycles(_graph(ALL)) == []


def test_every_core_folder_has_a_rank() -> None:
    assert {_folder(m) for m in _modules(CORE)} <= set(RANKS)


@pytest.mark.parametrize("module", sorted(_modules(CORE)))
def test_core_imports_only_downwards_and_nothing_private_across_folders(module: str) -> None:
    here = _folder(module)
    wrong = []
    for target, name, line in _imports(ALL[module], module):
        framework = target.split(".")[0] in ("langchain_core", "langchain", "llama_index", "langgraph")
        # bench/ measures the adapters and the frameworks' own OpenVINO integrations: it is the one place
        # allowed to import them (only when those systems are selected).
        if framework and here != "bench":
            wrong.append(f"line {line}: the core imports the framework {target}")
        if not target.startswith("openvino_llm"):
            continue
        there = _folder(target) if target != "openvino_llm" else _folder(f"openvino_llm.{name}")
        if there != here and RANKS[there] > RANKS[here]:
            wrong.append(f"line {line}: {here} (rank {RANKS[here]}) imports upwards from {target}")
        private = (name or "").startswith("_") or any(p.startswith("_") and p != "__init__" for p in target.split("."))
        if there != here and private:
            wrong.append(f"line {line}: private {target}.{name} crosses from {there} into {here}")
    assert wrong == []


@pytest.mark.parametrize("module", sorted(m for m in ALL if not m.startswith("openvino_llm")))
def test_adapters_use_only_the_core_public_names(module: str) -> None:
    own = module.split(".")[0]
    wrong = []
    for target, name, line in _imports(ALL[module], module):
        top = target.split(".")[0]
        if top in ("langchain_openvino", "llama_index_openvino") and top != own:
            wrong.append(f"line {line}: one adapter imports the other ({target})")
        if top == "openvino_llm" and (
            (name or "").startswith("_") or any(p.startswith("_") for p in target.split("."))
        ):
            wrong.append(f"line {line}: private core name {target}.{name}")
    assert wrong == []


def test_the_check_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
