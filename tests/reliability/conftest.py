"""Fixtures for the reliability tests: the app under uWSGI with handlers that count their runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def replies_with_counting_rules(directory: Path) -> Path:
    """The shipped replies plus `count-me` (a handler that counts its runs in Redis, tests/counting_handlers.py)."""
    document = yaml.safe_load((ROOT / "replies.yaml").read_text())
    document["keywords"] = [
        {"match": "count-me", "reply": {"handler": "tests.counting_handlers:count_runs"}},
        *document["keywords"],
    ]
    path = directory / "replies.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


@pytest.fixture(scope="session")
def counting_replies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replies_with_counting_rules(tmp_path_factory.mktemp("reliability-replies"))


@pytest.fixture(scope="module")
def counting_app(start_app, counting_replies: Path):
    """The message server under uWSGI with the counting rules (shared by the reliability tests)."""
    return start_app(REPLIES_FILE=str(counting_replies))
