"""The shape of the production code, checked on every run: no `global`, one Redis client builder, and
import-linter's contracts in pyproject.toml (so that `pytest` alone checks them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = ROOT / "scripts" / "lint_imports.py"
# What runs in production: the web process, the token daemon, the worker, and the handlers they load.
PRODUCTION = ("index.py", "handle.py", "utils.py", "weixin", "handlers", "token_service", "slow_replies")


def production_files() -> list[Path]:
    files: list[Path] = []
    for name in PRODUCTION:
        path = ROOT / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def test_production_code_has_no_global_statement() -> None:
    """State lives on the App (weixin/app.py) or the object an entry point builds, never in a module global
    rebound at run time: one App per account needs nothing account-specific at module level."""
    files = production_files()
    assert len(files) > 30, files  # the walk found the packages
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: global {', '.join(node.names)}"
        for path in files
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if isinstance(node, ast.Global)
    ]
    assert not found, "\n".join(found)


def test_only_weixin_redis_clients_builds_redis_clients() -> None:
    """One module builds every Redis client, so that the timeouts are in one place (weixin/redis_clients.py)."""
    builders = ("Redis", "StrictRedis", "from_url")
    found = []
    for path in production_files():
        if path == ROOT / "weixin" / "redis_clients.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in builders:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LINT_IMPORTS), "--no-logo"], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_lint_imports_sees_the_root_modules(tmp_path: Path) -> None:
    """grimp reads packages only; the wrapper must add a root module's imports and the imports of it."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "low.py").write_text("def f():\n    import top  # inside a function, as a lazy import\n")
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "__init__.py").write_text("")
    (tmp_path / "top.py").write_text("from pkg import low\nimport tool\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["pkg", "tool"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "top never imports tool"\ntype = "forbidden"\n'
        'source_modules = ["top"]\nforbidden_modules = ["tool"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "layers"\ntype = "layers"\nlayers = ["top", "pkg"]\n'
    )
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "top -> tool (l.2)" in result.stdout
    assert "pkg.low -> top (l.2)" in result.stdout
