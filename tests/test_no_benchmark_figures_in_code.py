"""Production code gives the reason and the limit, not micro-benchmark figures: a figure such as
"about 30 µs" goes stale with the next library or machine, so it belongs in docs/benchmarks.md, which
`make bench` measures again."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ["index.py", "handle.py", "utils.py", "uwsgi.xml", "weixin", "handlers", "token_service",
              "slow_replies", "nginx"]
SUFFIXES = {".py", ".xml", ".conf"}
# "30 µs", "2.3 ms", "150us", "several microseconds"; not `microsecond=0`, not "in milliseconds".
FIGURE = re.compile(r"\d ?(µs|us|ns|ms)\b|\b(micro|nano)seconds\b")


def production_files() -> list[Path]:
    files: list[Path] = []
    for name in PRODUCTION:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
    return files


def test_production_code_quotes_no_micro_benchmark_figures() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in production_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FIGURE.search(line)
    ]
    assert found == [], "move these figures to docs/benchmarks.md and keep the reason:\n" + "\n".join(found)
