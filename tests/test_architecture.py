"""The architecture as checked code: import-linter's contracts in pyproject.toml, so that `pytest` alone checks them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = ROOT / "scripts" / "lint_imports.py"


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
