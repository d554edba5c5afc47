"""The soak's figures as the Markdown page docs/reliability.md (pure: figures and machine in, text out)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from soak.run import Figures


def machine() -> str:
    """CPU model, cores, memory, OS and Python: enough to compare runs, nothing identifying."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        memory_kb = 0
    return (
        f"{model}, {os.cpu_count()} cores, {memory_kb / 1024 / 1024:.0f} GB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


README_START = "<!-- soak:start -->"
README_END = "<!-- soak:end -->"


def readme_section(figures: Figures, machine_description: str, command: str) -> str:
    """The figures as the table between the README's soak markers."""
    return (
        f"{README_START}\n`{command}` on {figures.started_at}, {machine_description}:\n\n"
        f"| Figure | Value |\n|---|---|\n{_table(figures)}\n{README_END}"
    )


def replace_readme_section(readme: str, section: str) -> str:
    """`readme` with the text between the soak markers replaced (unchanged when the markers are missing)."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        return readme
    return readme[:start] + section + readme[end + len(README_END) :]


def _table(figures: Figures) -> str:
    rows = [
        ("Duration", f"{figures.duration:.0f} s, {figures.clients} client threads, {figures.workers} uWSGI workers"),
        ("Pushes (every message and event type, plain/compatible/safe)", f"{figures.pushes:,}"),
        ("HTTP requests through nginx", f"{figures.requests:,}"),
        ("Deliberate WeChat-style re-sends of answered pushes (same bytes)", f"{figures.deliberate_resends:,}"),
        ("Re-sends after no usable answer (as WeChat retries)", f"{figures.resends_after_no_answer:,}"),
        ("Faults injected", "; ".join(figures.faults) or "none"),
        ("5xx answers (each re-sent by WeChat)", f"{figures.answers_5xx:,}"),
        ("4xx answers", f"{figures.answers_4xx:,}"),
        ("Pushes WeChat gave up on (no usable answer after retries)", f"{figures.final_failures:,}"),
        ("Answers WeChat would reject (sandbox.checks)", f"{figures.check_errors:,}"),
        ("Messages whose handler counts its runs", f"{figures.counted:,} ({figures.handled_runs:,} runs)"),
        ("Handled twice or more", f"{figures.duplicated:,} ({figures.duplicated_in_fault_windows:,} during a fault)"),
        ("Lost (never got their reply)", f"{figures.lost:,} ({figures.lost_in_fault_windows:,} during a fault)"),
        ("Worker RSS (largest worker): start → end, max",
         f"{figures.rss_start_mb:.1f} MB → {figures.rss_end_mb:.1f} MB, max {figures.rss_max_mb:.1f} MB"),
    ]
    return "\n".join(f"| {name} | {value} |" for name, value in rows)


def render(figures: Figures, machine_description: str, command: str) -> str:
    table = _table(figures)
    problems = "\n".join(f"- {problem}" for problem in figures.problems[:20]) or "- none"
    return f"""# Reliability: soak figures

Written by `{command}` (soak/, `make soak`) on {figures.started_at}.
Machine: {machine_description}.

Redis, uWSGI (the shipped `uwsgi.xml`) and nginx (the shipped site) run on loopback. Client threads push
every message and event type in plaintext, compatible and safe mode and judge each answer the way WeChat
does (`sandbox.checks`); a push without a usable answer (5xx, timeout, reset) is re-sent with the same
bytes up to 3 times, as WeChat does, and a share of answered pushes is re-sent anyway (WeChat re-sends
when an answer was late), half of them while the first delivery is still being handled. Half the text
messages match a rule whose handler records each run in a file, which is how "handled twice" and
"lost" are counted. Faults are injected during the run.

| Figure | Value |
|---|---|
{table}

"During a fault" means a delivery of that message was sent while Redis was down or in the app's Redis
back-off after it (5 s; the app then dedupes in uWSGI's shared memory, `weixin/local_dedupe.py`, so only a
message claimed in Redis just before the fault can be handled twice), or within the claim lease after a
worker was killed (the retry takes over a dead worker's claim, so its handler may have run twice).
Worker memory is sampled every second after a warm-up.

Problems seen (first 20):

{problems}

Property tests, the attack corpus, the fuzz target and the fault tests: `tests/reliability/`, `fuzz/`
(`make fuzz`).
"""
