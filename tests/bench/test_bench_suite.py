"""The benchmark suite still runs end to end: `bench/run.py --quick` exits 0 and prints every section.

No figure is checked: speed is never asserted in a test (the quick run's figures mean nothing).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SECTIONS = (
    "## Throughput through nginx + uWSGI",
    "| case ",
    "req/s",
    "p50 ms",
    "p99 ms",
    "× WeRoBot",
    "× ceiling",
    "WeRoBot 1.13.1: keyword",
    "bare WSGI (ceiling)",
    "LOG_LEVEL=WARNING",
    "## Where the time goes under load",
    "Redis unreachable",
    "## How cost grows",
    "## In-process cost per message",
    "median µs",
    "cumulative",
    "## token_service",
    "upstream stable_token calls",
    "## Worker memory",
    "VmRSS MB",
    "## Fairness",
)


def test_quick_run_exits_0_prints_every_section_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    hand_written = "\n## Figures formerly quoted in code comments\n\n- kept by hand\n"
    report.write_text("# Benchmarks\n\nan older run\n" + hand_written, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench/run.py"), "--quick", "--write", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    for heading in SECTIONS:
        assert heading in completed.stdout, heading
    written = report.read_text(encoding="utf-8")
    assert written.startswith("# Benchmarks")
    assert all(heading in written for heading in SECTIONS)
    assert written.endswith(hand_written) and "an older run" not in written
