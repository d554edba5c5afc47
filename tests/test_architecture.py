"""The shape of the production code, checked on every run."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
