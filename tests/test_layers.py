"""The package's import structure: no package reaches into another one's private modules, the
shared helpers form a bottom layer, and packages do not import each other in a circle.

Read from the source with ``ast`` (lazy imports inside functions count too: they are
dependencies all the same), so these tests import nothing heavy and take well under a second.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules(root: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is_package) for every module under ``root``."""
    out = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _imports(root: Path = SRC) -> list[tuple[str, str, int]]:
    """(importer, imported longreward module, line) for every import statement, resolved to
    the deepest existing module (``from .x import name`` names module ``x.name`` when that is
    a module, else ``x``)."""
    modules = _modules(root)
    found = []
    for name, (path, is_pkg) in modules.items():
        package = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + (node.module.split(".") if node.module else []))
                wanted = [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                target, wanted = "", [a.name for a in node.names]
            else:
                continue
            for w in wanted:
                hit = w if w in modules else target if target in modules else None
                if hit is None and w.startswith("longreward."):  # import a.b.c: the module a.b
                    parts = w.split(".")
                    while parts and ".".join(parts) not in modules:
                        parts.pop()
                    hit = ".".join(parts) or None
                if hit and hit.startswith("longreward") and hit != name:
                    found.append((name, hit, node.lineno))
    return found


def _package_of(module: str, modules: dict[str, tuple[Path, bool]]) -> str:
    return module if modules[module][1] else module.rpartition(".")[0]


def private_reaches(root: Path = SRC) -> list[str]:
    """Imports of a private module (a path part starting with ``_``) from outside the package
    that holds it. The root package's private modules (``longreward._util``) serve all."""
    bad = []
    for importer, target, line in _imports(root):
        parts = target.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:i])
                if owner != "longreward" and not (importer == owner
                                                  or importer.startswith(owner + ".")):
                    bad.append(f"{importer}:{line} imports {target}")
                break
    return sorted(set(bad))


def package_cycles(root: Path = SRC) -> list[list[str]]:
    """Cycles in the graph of packages (directories; a top-level module such as ``config`` is
    a node of its own). Left out: ``__main__`` scripts (entry points that run the CLI), the
    root ``__init__`` (the public facade, which imports everything by design) and imports
    between a package and its own subpackages (one body of code)."""
    modules = _modules(root)

    def node(module: str) -> str:
        if module.count(".") == 1 and not modules[module][1]:
            return module  # longreward.config, longreward.errors, ...
        return _package_of(module, modules)

    edges: dict[str, set[str]] = {}
    for importer, target, _line in _imports(root):
        if importer.endswith("__main__") or importer == "longreward":
            continue
        a, b = node(importer), node(target)
        if a == b or a.startswith(b + ".") or b.startswith(a + "."):
            continue
        edges.setdefault(a, set()).add(b)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                cycles.append([*path[path.index(m):], m])
            elif m not in state:
                visit(m, [*path, m])
        state[n] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return cycles


def test_no_module_reaches_into_another_packages_private_module() -> None:
    assert private_reaches() == []


def test_shared_helpers_are_the_bottom_layer() -> None:
    """``longreward._util`` imports no other longreward package (``errors`` aside), so every
    package can use it without a cycle."""
    above = [f"{a}:{line} imports {b}" for a, b, line in _imports()
             if a.startswith("longreward._util")
             and not b.startswith("longreward._util") and b != "longreward.errors"]
    assert above == []


def test_packages_import_each_other_without_cycles() -> None:
    assert package_cycles() == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """A tree with a private reach and a cycle is caught (so the tests above are not vacuous)."""
    pkg = tmp_path / "longreward"
    for sub, text in {"__init__.py": "", "a/__init__.py": "", "a/_hidden.py": "X = 1\n",
                      "a/user.py": "from ..b import Y\n", "b/__init__.py": "",
                      "b/mod.py": "from ..a._hidden import X\nY = X\n"}.items():
        (pkg / sub).parent.mkdir(parents=True, exist_ok=True)
        (pkg / sub).write_text(text)
    assert private_reaches(tmp_path) == ["longreward.b.mod:1 imports longreward.a._hidden"]
    assert package_cycles(tmp_path) == [["longreward.a", "longreward.b", "longreward.a"]]


@pytest.mark.parametrize("old", ["longreward.scorer", "longreward.pairs", "longreward.data.io"])
def test_the_0_1_import_paths_are_gone(old: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
