"""deploy/systemd/weixin-worker.service runs the worker from the venv and stops it the way rq finishes a job."""

from __future__ import annotations

import shlex
from pathlib import Path

from devstack.processes import PROJECT_ROOT
from slow_replies.jobs import JOB_TIMEOUT_SECONDS

UNIT = PROJECT_ROOT / "deploy/systemd/weixin-worker.service"


def service_lines(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    start = lines.index("[Service]") + 1
    end = next(index for index in range(start, len(lines)) if lines[index].startswith("["))
    return dict(line.split("=", 1) for line in lines[start:end] if line and not line.startswith("#"))


def test_the_unit_runs_the_worker_from_the_venv_and_lets_the_running_job_finish_on_stop() -> None:
    unit = service_lines(UNIT)
    program, *arguments = shlex.split(unit["ExecStart"])
    assert program == "/srv/weixin/.venv/bin/python" and arguments == ["-m", "slow_replies", "worker"]
    assert (PROJECT_ROOT / "slow_replies/__main__.py").is_file()
    # SIGTERM to the main process only (rq's warm shutdown); the job's forked process would die of it.
    assert unit["KillSignal"] == "SIGTERM" and unit["KillMode"] == "mixed"
    assert int(unit["TimeoutStopSec"]) > JOB_TIMEOUT_SECONDS
    # The last EnvironmentFile= line: its own (after /etc/weixin/common.env), see deploy/env/worker.env.example.
    assert unit["EnvironmentFile"] == "/etc/weixin/worker.env" and unit["Restart"] == "always"
