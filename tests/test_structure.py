"""The layout's rules, checked on the source: `gridkit` below its CLI never imports `cinn` or `catalogs` (the
toolkit's base layer stands alone), `catalogs` never imports `cinn` or torch, and no two modules import each other
(directly or through others), counting imports inside functions too."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gridkit", "cinn", "catalogs")
#: the only gridkit modules that may import cinn or catalogs: the command line and the demo drive the whole chain
GRIDKIT_TOP = ("gridkit.cli", "gridkit.commands", "gridkit.demo")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Modules of the project that `name` imports anywhere in its source (a name imported from a package counts
    as the submodule of that name when there is one)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] in PACKAGES and t in modules)
    out.discard(name)
    return out


def _graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_gridkit_below_the_cli_imports_neither_cinn_nor_catalogs():
    bad = {m: sorted(t for t in deps if t.split(".")[0] in ("cinn", "catalogs"))
           for m, deps in _graph().items() if m.startswith("gridkit") and not m.startswith(GRIDKIT_TOP)}
    assert not {m: d for m, d in bad.items() if d}


def test_catalogs_imports_neither_cinn_nor_torch():
    modules = _modules()
    for m, p in modules.items():
        if m.startswith("catalogs"):
            text = p.read_text()
            assert "import torch" not in text and "from cinn" not in text and "import cinn" not in text, m


def test_no_import_loops():
    graph = _graph()
    # a package's __init__ re-exporting its submodules is not a loop with them
    edges = {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in graph.items()}
    index, low, stack, on, loops = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                loops.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not loops, f"modules that import each other: {loops}"
