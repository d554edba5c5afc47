"""`make run` (python -m devstack) on a fresh machine: the whole stack comes up, the printed simulator commands work
through it, and Ctrl-C (SIGINT) leaves no process behind."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from devstack.processes import PROJECT_ROOT, free_port


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat): a pid reused later differs in it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def descendants(root: int) -> dict[int, tuple[str | None, str]]:
    """Every process below `root` (by parent pid): pid -> (start time, command line)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: dict[int, tuple[str | None, str]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    command = ""
                found[pid] = (process_start_time(pid), command)
                frontier.append(pid)
    return found


def wait_for_output(path: Path, marker: str, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if marker in text:
            return text
        assert process.poll() is None, f"python -m devstack exited with {process.returncode}:\n{text}"
        time.sleep(0.1)
    raise AssertionError(f"python -m devstack printed no {marker!r} in {timeout}s:\n{path.read_text(errors='replace')}")


def test_make_run_brings_up_the_stack_the_printed_commands_work_and_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WECHAT_", "REDIS_"))}
    env.update(PORT=str(port), RUN_DIRECTORY=str(tmp_path / "run"), DOTENV_FILE="/dev/null", PYTHONUNBUFFERED="1")
    output = tmp_path / "run.out"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack"], cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        text = wait_for_output(output, "Press Ctrl-C", process, timeout=60)
        url = f"http://127.0.0.1:{port}/weixin"
        assert f"WeChat endpoint (send messages here): {url}" in text
        assert "access_token in Redis" in text
        commands = [line.strip() for line in text.splitlines() if ".venv/bin/python -m sandbox" in line]
        verify = next(line for line in commands if " verify " in line)
        send = next(line for line in commands if " send " in line and "--mode safe" in line)
        for command in (verify, send):
            result = subprocess.run(
                shlex.split(command), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=30
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "valid reply" in result.stdout

        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert health["redis"]["reachable"] and health["token"]["present"]

        children = descendants(process.pid)
        names = " ".join(command for _, command in children.values())
        for expected in ("redis-server", "sandbox serve", "token_service run", "uwsgi", "nginx"):
            assert expected in names, f"{expected} not running under python -m devstack: {names}"

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 5
    while True:
        left = {
            pid: command
            for pid, (started, command) in children.items()
            if started is not None and process_start_time(pid) == started
        }
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"still running after Ctrl-C: {left}"
    assert "stopping..." in output.read_text()
