"""Structure of the package: no import cycles between padrec modules, no module over 400 lines.

The import graph is read from the source with :mod:`ast` (nothing is imported): every
``import`` and ``from ... import`` counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "padrec"
MAX_LINES = 400


def module_files(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``package`` under ``src``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported_names(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """The padrec modules one import statement names (see :func:`import_graph`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in modules else target)
    return found


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (module- and function-level imports alike).

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``;
    relative imports are resolved; ``import a.b`` is an edge to ``a.b`` (or to its nearest
    enclosing module when ``a.b`` is not one). A package's ``__init__`` importing its own
    submodules adds no edge.
    """
    files = module_files(src, package)
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported_names(node, module, is_package, modules):
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if not name or name == module:
                    continue
                if is_package and name.startswith(module + "."):
                    continue
                graph[module].add(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for comp in components:
        if len(comp) == 1 and comp[0] not in graph.get(comp[0], ()):
            continue
        members, start = set(comp), comp[0]
        # Shortest path back to ``start`` inside the component (breadth first).
        came_from: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in came_from:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w not in came_from:
                        came_from[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        v = came_from[start]
        while v != start:
            path.append(v)
            v = came_from[v]
        cycles.append([start, *reversed(path[1:]), start])
    return cycles


# --------------------------------------------------------------------------- the checker itself


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_graph_reader_resolves_every_import_form(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "pk/__init__.py": "from pk.a import f\nfrom . import b\n",
            "pk/a.py": "import os\n\ndef f():\n    from .sub import deep\n",
            "pk/b.py": "from pk import a\nfrom pk.sub.deep import name\n",
            "pk/c.py": "import pk.sub.deep\nfrom pk import CONSTANT\nfrom ..outside import x\n",
            "pk/sub/__init__.py": "from .deep import name\nfrom pk.b import g\n",
            "pk/sub/deep.py": "from ..a import f\nfrom . import missing\n",
        },
    )
    graph = import_graph(src, "pk")
    assert graph == {
        "pk": set(),  # its own submodules only
        "pk.a": {"pk.sub.deep"},  # function-level, relative
        "pk.b": {"pk.a", "pk.sub.deep"},  # `from pk import a`: a is a module
        "pk.c": {"pk.sub.deep", "pk"},  # `from pk import CONSTANT`: an edge to the package
        "pk.sub": {"pk.b"},
        "pk.sub.deep": {"pk.a", "pk.sub"},  # `from . import missing`: not a module
    }


def test_cycle_finder(tmp_path: Path) -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "d"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}) == [["c", "d", "c"], ["a", "b", "a"]]
    src = _tree(tmp_path, {"q/__init__.py": "", "q/x.py": "def f():\n    import q.y\n", "q/y.py": "from q import x\n"})
    assert find_cycles(import_graph(src, "q")) == [["q.x", "q.y", "q.x"]]


# --------------------------------------------------------------------------- the package


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(SRC, PACKAGE))
    if cycles:
        pytest.fail(
            f"{len(cycles)} import cycle(s) between padrec modules:\n" + "\n".join(" -> ".join(c) for c in cycles)
        )


def test_no_module_over_400_lines() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in module_files(SRC, PACKAGE).items()
    }
    assert len(sizes) > 20  # the package was found
    over = sorted((n, name) for name, n in sizes.items() if n > MAX_LINES)
    if over:
        pytest.fail(
            f"{len(over)} module(s) over {MAX_LINES} lines:\n"
            + "\n".join(f"{module_files(SRC, PACKAGE)[name].relative_to(SRC.parent)}: {n} lines" for n, name in over)
        )
