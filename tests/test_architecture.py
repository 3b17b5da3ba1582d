"""The package's shape, checked over the AST (issue 16): no import cycle, no function over 120 lines,
no test-data writer shipped in ``src/``.

Run as a script (``python tests/test_architecture.py``) it prints the figures quoted in the changelog: internal
imports (and how many sit inside functions), the longest functions, lines of ``src/`` and of the CLI.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 120


def modules(root: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    out = {}
    for p in sorted((root / "poolstride").rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {ch: node for node in ast.walk(tree) for ch in ast.iter_child_nodes(node)}


def imports(mods: dict[str, Path]) -> list[tuple[str, str, bool, int]]:
    """``(importer, imported, at_top_level, line)`` for every import of a package module.

    ``from a import b`` names module ``a.b`` when that is a module, else ``a``; imports under
    ``if TYPE_CHECKING:`` are left out (they never run). Imports inside functions count: they are edges too. So do
    the enclosing packages of what is imported (their ``__init__`` runs first), but the root package.
    """
    res = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        parent = _parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            top, type_only, p = True, False, parent.get(node)
            while p is not None:
                if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    top = False
                if isinstance(p, ast.If) and "TYPE_CHECKING" in ast.unparse(p.test):
                    type_only = True
                p = parent.get(p)
            if type_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in mods else prefix for a in node.names]
            for t in targets:
                if t.split(".")[0] != "poolstride":
                    continue
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != mod:
                    res.append((mod, t, top, node.lineno))
                # Importing a.b.c first runs the packages a.b and a: an edge to each enclosing package too, except
                # the root (it only re-exports) and the importer's own packages (already importing).
                parts = t.split(".")
                for i in range(2, len(parts)):
                    pkg = ".".join(parts[:i])
                    if pkg != mod and not (mod + ".").startswith(pkg + "."):
                        res.append((mod, pkg, top, node.lineno))
    return res


def cycles(edges: list[tuple[str, str, bool, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for a, b, *_ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def functions(mods: dict[str, Path]) -> list[tuple[int, str]]:
    """``(lines, "module.function:line")`` for every function and method, longest first."""
    res = []
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                res.append((node.end_lineno - node.lineno + 1, f"{mod}.{node.name}:{node.lineno}"))
    return sorted(res, reverse=True)


def test_no_import_cycle() -> None:
    found = cycles(imports(modules()))
    assert not found, "import cycles among src/poolstride modules: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_function_over_limit() -> None:
    long = [f"{name} ({n} lines)" for n, name in functions(modules()) if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(long)


def test_no_fake_writer_in_src() -> None:
    assert not [m for m in modules() if "fake" in m.rsplit(".", 1)[-1]]


def test_every_module_imports_first() -> None:
    """Each module imports in a fresh package state, whatever was imported before (an order-dependent import
    error is a cycle the static check missed). Torch and other third-party modules stay loaded: this is fast."""
    import importlib

    failed = []
    saved = {k: v for k, v in sys.modules.items() if k == "poolstride" or k.startswith("poolstride.")}
    try:
        for name in [m for m in modules() if not m.endswith("__main__")]:  # __main__ runs the CLI
            for k in [k for k in sys.modules if k == "poolstride" or k.startswith("poolstride.")]:
                del sys.modules[k]
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - collect every failure
                failed.append(f"{name}: {type(e).__name__}: {e}")
    finally:
        for k in [k for k in sys.modules if k == "poolstride" or k.startswith("poolstride.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    assert not failed, "\n".join(failed)


def test_import_poolstride_is_light() -> None:
    """``import poolstride`` loads no torch (the entry points load on first use); ``poolstride.parse`` works."""
    import subprocess

    code = "import sys, poolstride; assert 'torch' not in sys.modules; print(poolstride.parse('conv(k=5)'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "conv(k=5)"


def test_cycle_finder_finds_a_cycle() -> None:
    edges = [("a", "b", True, 1), ("b", "c", False, 1), ("c", "a", True, 1), ("c", "d", True, 1)]
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles(edges[1:]) == []


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else SRC
    mods = modules(root)
    edges = imports(mods)
    fns = functions(mods)
    print(f"modules: {len(mods)}")
    print(f"internal imports: {len(edges)}, inside functions: {sum(1 for e in edges if not e[2])}")
    print(f"import cycles: {cycles(edges)}")
    for limit in (50, 80, 100, 120):
        print(f"functions over {limit} lines: {sum(1 for n, _ in fns if n > limit)}")
    print("longest:", ", ".join(f"{name} {n}" for n, name in fns[:8]))
    lines = {m: len(p.read_text().splitlines()) for m, p in mods.items()}
    print(f"lines: src {sum(lines.values())}, cli {sum(v for m, v in lines.items() if m.startswith('poolstride.cli'))}")
