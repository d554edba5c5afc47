"""`lint-imports` (import-linter) over the whole tree, root modules included: the contracts in pyproject.toml.

    python scripts/lint_imports.py     # from the repository root, as `make test` does; arguments go to lint-imports

import-linter builds its graph with grimp, which reads packages only: the three modules at the root (index,
handle, utils) would be missing, and with them the top of the layers and any import of `handle` from a
package. This builder adds them: every `*.py` at the root except conftest.py, their imports, and the imports
of them from the packages. Imports by name (importlib.import_module) are invisible here, as to grimp.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from grimp import ImportGraph
from importlinter import cli
from importlinter.adapters.building import GraphBuilder
from importlinter.application.app_config import settings


def root_modules(root: Path) -> list[str]:
    """The modules that live as single files at the repository root."""
    return sorted(path.stem for path in root.glob("*.py") if path.name != "conftest.py")


def module_file(module: str, root: Path) -> Path | None:
    """The source file of an internal module: a/b.py or a/b/__init__.py."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def absolute_imports(path: Path) -> Iterator[tuple[str, int, str]]:
    """(dotted name, line number, line) of every absolute import in a file, those inside functions too.

    `from a import b` yields a.b: b may be a module or a name in a, which resolve() decides."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            yield name, node.lineno, lines[node.lineno - 1].strip()


def resolve(name: str, modules: set[str]) -> str | None:
    """The longest prefix of a dotted name that is a module in the graph; None for external imports."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def add_root_modules(graph: ImportGraph, root: Path) -> None:
    """Add the root modules to a graph of the packages, with their imports both ways."""
    roots = root_modules(root)
    for module in roots:
        graph.add_module(module)
    modules = set(graph.modules)
    for importer in roots:
        for name, line_number, line in absolute_imports(root / f"{importer}.py"):
            imported = resolve(name, modules)
            if imported is not None and imported != importer:
                graph.add_import(importer=importer, imported=imported, line_number=line_number, line_contents=line)
    for importer in sorted(modules - set(roots)):
        path = module_file(importer, root)
        if path is None:
            continue
        for name, line_number, line in absolute_imports(path):
            imported = resolve(name, set(roots))
            if imported is not None:
                graph.add_import(importer=importer, imported=imported, line_number=line_number, line_contents=line)


class WithRootModules(GraphBuilder):
    """grimp's graph of root_packages, plus the modules at the root (the current directory, as for lint-imports)."""

    def build(self, root_package_names: list[str], cache_dir: str | None, include_external_packages: bool = False,
              exclude_type_checking_imports: bool = False) -> ImportGraph:
        graph = super().build(root_package_names, cache_dir, include_external_packages, exclude_type_checking_imports)
        add_root_modules(graph, Path.cwd())
        return graph


def main() -> None:
    sys.path.insert(0, os.getcwd())  # the packages are imported from the checkout, as the tests do
    settings.configure(GRAPH_BUILDER=WithRootModules())
    # No cache directory: the graph takes about a second, and a cache would be one more ignored folder.
    cli.lint_imports_command(["--no-cache", *sys.argv[1:]])


if __name__ == "__main__":
    main()
