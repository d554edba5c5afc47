"""The systemd units and install.sh: systemd accepts the units, every path they name exists in the repo,
and weixin.service's ExecStart, stopped with its KillSignal, shuts down gracefully (exit 0, no worker left)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from processes import PROJECT_ROOT, ManagedProcess, render_uwsgi_config, wait_for_unix

UNITS = PROJECT_ROOT / "deploy/systemd"
INSTALL_DIRECTORY = "/srv/weixin"


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, separator, value = line.partition("=")
        assert separator and current is not None, f"{path.name}: not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def in_repo(path: str) -> Path:
    """A /srv/weixin path as it is in this checkout."""
    assert path == INSTALL_DIRECTORY or path.startswith(INSTALL_DIRECTORY + "/"), path
    return PROJECT_ROOT / path.removeprefix(INSTALL_DIRECTORY).lstrip("/")


def service(name: str) -> dict[str, list[str]]:
    return read_unit(UNITS / name)["Service"]


def test_systemd_analyze_verify_accepts_both_units_without_a_warning(tmp_path: Path) -> None:
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze is part of the systemd package on Debian/Ubuntu"
    for unit in UNITS.glob("*.service"):
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALL_DIRECTORY, str(PROJECT_ROOT)))
    result = subprocess.run(
        [systemd_analyze, "verify", *sorted(str(path) for path in tmp_path.glob("*.service"))],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_the_app_unit_runs_the_shipped_uwsgi_xml_from_the_venv_with_its_socket_directory() -> None:
    unit = service("weixin.service")
    program, *arguments = shlex.split(unit["ExecStart"][0])
    assert in_repo(program) == PROJECT_ROOT / ".venv/bin/uwsgi"
    assert os.access(in_repo(program), os.X_OK)
    assert arguments == ["--xml", f"{INSTALL_DIRECTORY}/uwsgi.xml"] and in_repo(arguments[1]).is_file()
    # RuntimeDirectory=weixin is /run/weixin: where uwsgi.xml puts the socket and nginx looks for it.
    assert unit["RuntimeDirectory"] == ["weixin"]
    assert "<socket>/run/weixin/uwsgi.sock</socket>" in (PROJECT_ROOT / "uwsgi.xml").read_text()
    assert "unix:/run/weixin/uwsgi.sock" in (PROJECT_ROOT / "nginx/weixin.conf").read_text()
    assert unit["User"] == ["www-data"] and unit["Group"] == ["www-data"]
    assert unit["EnvironmentFile"] == [f"{INSTALL_DIRECTORY}/.env"]
    assert in_repo(unit["WorkingDirectory"][0]) == PROJECT_ROOT
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillSignal"] == ["SIGTERM"] and unit["KillMode"] == ["mixed"]
    # The graceful stop must finish before systemd's SIGKILL: uWSGI's mercy is 10 s.
    assert "<reload-mercy>10</reload-mercy>" in (PROJECT_ROOT / "uwsgi.xml").read_text()
    assert int(unit["TimeoutStopSec"][0]) > 10


def test_the_token_unit_runs_token_service_from_the_venv_and_always_restarts() -> None:
    unit = service("weixin-token.service")
    program, *arguments = shlex.split(unit["ExecStart"][0])
    assert in_repo(program) == PROJECT_ROOT / ".venv/bin/python"
    assert arguments == ["-m", "token_service", "run"]
    assert (PROJECT_ROOT / "token_service/__main__.py").is_file()
    assert unit["Restart"] == ["always"]
    assert unit["EnvironmentFile"] == [f"{INSTALL_DIRECTORY}/.env"]
    assert in_repo(unit["WorkingDirectory"][0]) == PROJECT_ROOT


def test_install_script_is_valid_bash_and_names_files_that_exist() -> None:
    script = PROJECT_ROOT / "deploy/install.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=10)
    text = script.read_text()
    for mentioned in sorted(set(re_paths(text))):
        assert in_repo(mentioned).exists(), f"install.sh names {mentioned}, which is not in the repo"
    assert "deploy/systemd/weixin.service" in text and "deploy/systemd/weixin-token.service" in text
    env_example = (PROJECT_ROOT / "deploy/env.example").read_text()
    for name in ("WECHAT_TOKEN", "WECHAT_APPID", "WECHAT_APPSECRET", "WECHAT_ENCODING_AES_KEY", "REDIS_URL"):
        assert f"\n{name}=" in env_example


def re_paths(text: str) -> list[str]:
    import re

    return [
        "/srv/weixin/" + match
        for match in re.findall(r"\$APP_DIR/([\w./-]+)", text)
        if not match.startswith((".venv", ".env"))
    ]


def environment_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.mark.timeout(60)
def test_the_app_units_execstart_stops_gracefully_on_its_kill_signal(tmp_path: Path, redis_server) -> None:
    unit = service("weixin.service")
    socket_path = tmp_path / "uwsgi.sock"
    config = render_uwsgi_config(tmp_path, socket_path)  # only the paths change
    program, *arguments = shlex.split(unit["ExecStart"][0])
    arguments = [str(config) if argument.endswith("uwsgi.xml") else argument for argument in arguments]
    env = {
        **os.environ,
        **environment_file(PROJECT_ROOT / "deploy/env.example"),
        "WECHAT_TOKEN": "unittoken",
        "REDIS_URL": redis_server.url,
        "DOTENV_FILE": "/dev/null",
    }
    process = ManagedProcess("uwsgi", [str(in_repo(program)), *arguments], tmp_path / "uwsgi.log", env=env).start()
    try:
        wait_for_unix(socket_path)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        deadline = time.monotonic() + 20
        while "master-start" not in process.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # the workers are forked and the master's start hook has run
        workers = children.read_text().split()
        assert workers, process.log_text()[-2000:]
        # KillMode=mixed: the signal goes to the master only.
        os.kill(process.pid, getattr(signal, unit["KillSignal"][0]))
        assert process.process.wait(timeout=int(unit["TimeoutStopSec"][0])) == 0, process.log_text()[-2000:]
        assert "graceful shutdown" in process.log_text()
        assert not any(Path(f"/proc/{worker}").exists() for worker in workers)
        assert not socket_path.exists()  # vacuum: nginx sees "no such file", not a dead socket
    finally:
        process.stop()
