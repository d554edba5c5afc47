"""The systemd units and install.sh: systemd accepts the units, every path they name exists in the repo,
and weixin.service's ExecStart, stopped with its KillSignal, shuts down gracefully (exit 0, no worker left)."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from devstack.processes import PROJECT_ROOT, ManagedProcess, render_uwsgi_config, wait_for_unix

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


def uwsgi_xml() -> str:
    return (PROJECT_ROOT / "uwsgi.xml").read_text()


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
    # Its own user; the primary group is nginx's, so that the socket and /run/weixin are weixin:www-data.
    assert unit["User"] == ["weixin"] and unit["Group"] == ["www-data"] and unit["SupplementaryGroups"] == ["weixin"]
    assert unit["RuntimeDirectoryMode"] == ["0750"] and "<chmod-socket>660</chmod-socket>" in uwsgi_xml()
    assert unit["EnvironmentFile"] == ["/etc/weixin/common.env", "/etc/weixin/web.env"]
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
    assert unit["EnvironmentFile"] == ["/etc/weixin/common.env", "/etc/weixin/token.env"]
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
        **environment_file(PROJECT_ROOT / "deploy/env/common.env.example"),
        **environment_file(PROJECT_ROOT / "deploy/env/web.env.example"),
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


# --- privileges (issue 13, item 8) -----------------------------------------------------------------------

UNIT_FILES = ("weixin.service", "weixin-token.service", "weixin-worker.service")
# Which env files each unit reads, and the secrets that must never be in them.
UNIT_ENV = {"weixin.service": "web", "weixin-token.service": "token", "weixin-worker.service": "worker"}
FORBIDDEN = {
    # AI_API_KEY: only the worker calls the chat model (handlers/ai_chat.py is a background rule).
    "web": {"WECHAT_APPSECRET", "AI_API_KEY"},  # APPSECRET only with the OAuth pages, added by the operator
    "token": {"WECHAT_TOKEN", "WECHAT_ENCODING_AES_KEY", "AI_API_KEY"},
    "worker": {"WECHAT_TOKEN", "WECHAT_ENCODING_AES_KEY", "WECHAT_APPSECRET"},
    "common": {"WECHAT_TOKEN", "WECHAT_ENCODING_AES_KEY", "WECHAT_APPSECRET", "REDIS_URL", "SESSION_SECRET",
               "AI_API_KEY"},
}
SECURITY_LINE = re.compile(r"Overall exposure level for \S+: (\d+\.\d) (\w+)")


@pytest.mark.parametrize("name", UNIT_FILES)
def test_systemd_analyze_security_rates_every_unit_ok_or_better(name: str, tmp_path: Path) -> None:
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze
    unit = tmp_path / name
    unit.write_text((UNITS / name).read_text().replace(INSTALL_DIRECTORY, str(PROJECT_ROOT)))
    result = subprocess.run([systemd_analyze, "security", "--offline=yes", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60)
    found = SECURITY_LINE.search(result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    exposure, rating = float(found.group(1)), found.group(2)
    failed = [line.strip() for line in result.stdout.splitlines() if line.lstrip().startswith("✗")]
    assert exposure <= 3.9 and rating in {"OK", "SAFE", "PERFECT"}, (exposure, rating, failed)


@pytest.mark.parametrize("name", UNIT_FILES)
def test_every_unit_runs_as_weixin_with_its_own_env_file_and_no_dotenv(name: str) -> None:
    unit = service(name)
    assert unit["User"] == ["weixin"]
    assert unit["EnvironmentFile"] == ["/etc/weixin/common.env", f"/etc/weixin/{UNIT_ENV[name]}.env"]
    assert unit["Environment"] == ["DOTENV_FILE=/dev/null"]  # a stale /srv/weixin/.env is never read
    assert unit["ProtectSystem"] == ["strict"] and "ReadWritePaths" not in unit
    assert unit["UMask"] == ["0077"] and unit["CapabilityBoundingSet"] == [""]
    assert unit["SystemCallFilter"] == ["@system-service"]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


@pytest.mark.parametrize("name", ["common", "web", "token", "worker"])
def test_each_env_file_holds_only_the_secrets_its_unit_needs(name: str) -> None:
    values = environment_file(PROJECT_ROOT / f"deploy/env/{name}.env.example")
    assert not FORBIDDEN[name] & set(values), sorted(FORBIDDEN[name] & set(values))
    if name != "common":
        assert "REDIS_URL" in values  # each unit its own Redis user
    every_setting = environment_file(PROJECT_ROOT / "deploy/env.example")
    split = set()
    for part in ("common", "web", "token", "worker"):
        split |= set(environment_file(PROJECT_ROOT / f"deploy/env/{part}.env.example"))
    assert set(every_setting) <= split, sorted(set(every_setting) - split)  # nothing is lost in the split


def bash(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `script` with install-lib.sh's functions loaded, in tmp_path (install.sh itself needs root)."""
    library = PROJECT_ROOT / "deploy/install-lib.sh"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", f'. "{library}"\n{script}'], cwd=tmp_path, check=True,
                          capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"], **env})


def test_install_splits_an_old_dotenv_so_each_unit_gets_only_its_secrets(tmp_path: Path) -> None:
    legacy = tmp_path / "old.env"
    legacy.write_text("WECHAT_TOKEN=tok123\nWECHAT_APPID=wx1\nWECHAT_APPSECRET=appsecret1\n"
                      "WECHAT_ENCODING_AES_KEY=" + "k" * 43 + "\nREDIS_URL=redis://127.0.0.1:6379/0\nLOG_LEVEL=DEBUG\n")
    (tmp_path / "etc").mkdir()
    bash(f'split_env "{PROJECT_ROOT}/deploy/env" old.env etc', tmp_path)
    files = {name: environment_file(tmp_path / f"etc/{name}.env") for name in ("common", "web", "token", "worker")}
    for name, values in files.items():
        assert (tmp_path / f"etc/{name}.env").stat().st_mode & 0o077 == 0  # created 0600
        assert not FORBIDDEN[name] & {key for key, value in values.items() if value}, (name, values)
    assert files["common"]["WECHAT_APPID"] == "wx1" and files["common"]["LOG_LEVEL"] == "DEBUG"
    assert files["web"]["WECHAT_TOKEN"] == "tok123" and files["token"]["WECHAT_APPSECRET"] == "appsecret1"
    # The OAuth pages on: the web process gets the AppSecret too. Existing files are kept as they are.
    (tmp_path / "etc/web.env").unlink()
    legacy.write_text(legacy.read_text() + "PUBLIC_BASE_URL=https://example.com\n")
    (tmp_path / "etc/token.env").write_text("WECHAT_APPSECRET=edited-by-hand\n")
    bash(f'split_env "{PROJECT_ROOT}/deploy/env" old.env etc', tmp_path)
    assert environment_file(tmp_path / "etc/web.env")["WECHAT_APPSECRET"] == "appsecret1"
    assert environment_file(tmp_path / "etc/token.env") == {"WECHAT_APPSECRET": "edited-by-hand"}


def test_install_gives_each_unit_a_redis_password_once_and_the_acl_file_only_its_hash(tmp_path: Path) -> None:
    (tmp_path / "web.env").write_text("WECHAT_TOKEN=tok123\nREDIS_URL=redis://127.0.0.1:6379/0\n")
    script = 'ensure_redis_password web.env weixin-web >/dev/null; ensure_redis_password web.env weixin-web'
    password = bash(script, tmp_path).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", password)
    assert environment_file(tmp_path / "web.env") == {
        "WECHAT_TOKEN": "tok123", "REDIS_URL": f"unix://weixin-web:{password}@/run/redis/redis-server.sock?db=0"}
    assert bash(script, tmp_path).stdout.strip() == password  # a second run keeps it
    bash('render_acl "$TEMPLATE" users.acl "$P1" "$P2" "$P3"', tmp_path, P1=password, P2="b" * 64, P3="c" * 64,
         TEMPLATE=str(PROJECT_ROOT / "deploy/redis/users.acl.template"))
    acl = (tmp_path / "users.acl").read_text()
    assert password not in acl and hashlib.sha256(password.encode()).hexdigest() in acl
    assert all(line.startswith("user ") for line in acl.splitlines()) and "_SHA256@" not in acl
    assert [line.split()[1] for line in acl.splitlines()] == ["default", "weixin-web", "weixin-token",
                                                               "weixin-worker"]


def test_install_script_makes_the_user_the_files_and_passes_no_secret_in_argv() -> None:
    text = (PROJECT_ROOT / "deploy/install.sh").read_text()
    assert "APP_USER=weixin" in text and not re.search(r"root:www-data|-g www-data|chown www-data", text)
    assert re.search(r"useradd --system --user-group .*--shell /usr/sbin/nologin \"\$APP_USER\"", text)
    assert 'chmod 600 "$CONFIG_DIR/web.env" "$CONFIG_DIR/token.env" "$CONFIG_DIR/worker.env"' in text
    assert 'chown root:"$APP_USER" "$CONFIG_DIR/common.env"' in text and 'chmod 640 "$CONFIG_DIR/common.env"' in text
    assert 'install -d -m 750 -o root -g "$APP_USER" "$CONFIG_DIR"' in text
    assert "install_if_changed \"$acl_draft\" /etc/redis/users.acl 640 root:redis" in text
    # Passwords live in shell variables and go only to install-lib.sh's functions (bash builtins), never to a
    # program's argv.
    for line in text.splitlines():
        if "_password" in line and not line.lstrip().startswith("#"):
            assert re.match(r"\s*(\w+_password=\$\(ensure_redis_password |render_acl |unset )", line), line
    for needed in ("deploy/redis/weixin.conf", "deploy/redis/users.acl.template",
                   "deploy/redis/redis-server-socket-group.conf", "deploy/env"):
        assert f"$APP_DIR/{needed}" in text and (PROJECT_ROOT / needed).exists()
    redis_conf = (PROJECT_ROOT / "deploy/redis/weixin.conf").read_text()
    assert "\nunixsocketperm 660\n" in redis_conf and "\nport 0\n" in redis_conf
    assert "\nmaxmemory-policy noeviction\n" in redis_conf and "\naclfile /etc/redis/users.acl\n" in redis_conf
    drop_in = (PROJECT_ROOT / "deploy/redis/redis-server-socket-group.conf").read_text()
    assert "ExecStartPost=+/bin/chgrp weixin /run/redis/redis-server.sock" in drop_in


def test_install_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed: scripts/install-system-packages installs it"
    result = subprocess.run([shellcheck, "-x", "deploy/install.sh", "deploy/install-lib.sh"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
