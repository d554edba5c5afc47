"""Start and stop the local servers (Redis, uWSGI, nginx, ...) that `make run` and the tests need.

Every server gets its own temp directory, a free port or a unix socket, and is stopped by the
caller; nothing here depends on a server that happens to be running on the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_tcp(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_for_unix(path: str | os.PathLike, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {path} after {timeout}s")


def find_program(name: str) -> str:
    """The path of a server binary: the venv first (uwsgi), then PATH and the sbin folders."""
    candidates = [VENV_BIN / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    candidates += [Path("/usr/sbin") / name, Path("/usr/bin") / name, Path("/usr/local/sbin") / name]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise FileNotFoundError(f"{name} is not installed (run `make setup` or .ci/run)")


@dataclass
class ManagedProcess:
    """A child process with its own process group, a log file and a clean stop."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path = PROJECT_ROOT
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send_signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        """Ask the process (and its group) to stop; kill it if it has not after `timeout` s."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        # Children that outlived their parent (uWSGI workers, say) go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 5.0, count: int = 1) -> str:
        """The log once it contains `text` (`count` times or more): each worker writes its lines in
        batches (weixin/logs.py), so one worker's lines can show up before another's that came earlier. The log
        as it is if they never show up."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_text()
            if log.count(text) >= count or time.monotonic() >= deadline:
                return log
            time.sleep(0.05)


@dataclass
class RedisServer:
    """A private redis-server on a unix socket (and a TCP port) in its own directory. `config_file` (e.g.
    deploy/redis/weixin.conf) is read first, then the options below override it; `acl_file` loads ACL users
    (the URLs below then need a user's credentials: `url_for`)."""

    directory: Path
    port: int = 0
    process: ManagedProcess | None = None
    config_file: Path | None = None
    acl_file: Path | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        """A TCP URL: what a separate process (uWSGI, token_service) is given."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    def url_for(self, username: str, password: str, unix: bool = False) -> str:
        """A URL that logs in as an ACL user, in the form REDIS_URL takes in production."""
        if unix:
            return f"unix://{username}:{password}@{self.socket_path}?db=0"
        return f"redis://{username}:{password}@127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        argv = [
            find_program("redis-server"),
            *([str(self.config_file)] if self.config_file else []),
            *(["--aclfile", str(self.acl_file)] if self.acl_file else []),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            # The config file's own socket permissions (660 in deploy/redis/weixin.conf) when there is one.
            *([] if self.config_file else ["--unixsocketperm", "700"]),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]
        self.process = ManagedProcess("redis", argv, self.directory / "redis.log").start()
        wait_for_tcp(self.port)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def restart(self) -> None:
        """Stop and start on the same port, empty (no persistence), as after a crash."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running_redis(directory: Path | None = None) -> Iterator[RedisServer]:
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="redis-")))
        server = RedisServer(directory).start()
        stack.callback(server.stop)
        yield server


def wait_for_uwsgi_workers(process: ManagedProcess, timeout: float = 30.0) -> None:
    """uWSGI binds its socket before it loads the app; requests sent before a worker exists wait for the
    whole app import (about a second). Wait until the master has spawned its workers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "spawned uWSGI worker" in process.log_text():
            return
        if not process.alive():
            raise TimeoutError("uWSGI exited during start-up")
        time.sleep(0.05)
    raise TimeoutError(f"no uWSGI worker after {timeout}s")


def render_uwsgi_config(directory: Path, socket_path: Path, wsgi_file: Path | None = None) -> Path:
    """The shipped uwsgi.xml with only its paths changed: the project folder, the socket (and, for the
    benchmark's peers, the WSGI file)."""
    text = (PROJECT_ROOT / "uwsgi.xml").read_text()
    if wsgi_file is not None:
        text = text.replace("<wsgi-file>%dindex.py</wsgi-file>", f"<wsgi-file>{wsgi_file}</wsgi-file>")
    text = re.sub(r"(?<!%)%d", f"{PROJECT_ROOT}/", text).replace("/run/weixin/uwsgi.sock", str(socket_path))
    path = directory / "uwsgi.xml"
    path.write_text(text)
    return path


@dataclass
class UwsgiServer:
    """The message server under uWSGI with the shipped uwsgi.xml, on a unix socket for nginx."""

    directory: Path
    env: dict[str, str]
    workers: int | None = None
    wsgi_file: Path | None = None
    # uWSGI options after the shipped config (the last value of an option wins), e.g. the benchmark's
    # "--max-requests 0".
    extra_options: Sequence[str] = ()
    # A loopback HTTP port besides the shipped socket (0: none), for tests that talk to uWSGI without nginx.
    http_port: int = 0
    process: ManagedProcess | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "uwsgi.sock"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> UwsgiServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = render_uwsgi_config(self.directory, self.socket_path, self.wsgi_file)
        argv = [find_program("uwsgi"), "--xml", str(config)]
        if self.workers:
            argv += ["--processes", str(self.workers)]  # the last value of an option wins
        if self.http_port:
            argv += ["--http-socket", f"127.0.0.1:{self.http_port}"]
        argv += list(self.extra_options)
        env = {**os.environ, **self.env}
        self.process = ManagedProcess("uwsgi", argv, self.directory / "uwsgi.log", env=env).start()
        try:
            wait_for_unix(self.socket_path)
            if self.http_port:
                wait_for_tcp(self.http_port)
            wait_for_uwsgi_workers(self.process)
        except TimeoutError:
            self.stop()
            raise RuntimeError("uWSGI did not start:\n" + self.process.log_text()[-3000:]) from None
        return self

    def reload(self) -> None:
        """A graceful reload, as `systemctl reload` does (SIGHUP to the master)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        if self.process:
            self.process.stop(timeout=15)


@dataclass
class AppServer(UwsgiServer):
    """The message server as the tests start it: the shipped uwsgi.xml (UwsgiServer) with one worker unless
    told otherwise and a loopback HTTP socket (`port`, free if 0) besides the shipped unix socket, so a test
    runs the production settings (harakiri, buffer size, cache, listen queue) without nginx."""

    workers: int | None = 1
    port: int = 0

    def start(self) -> AppServer:
        self.port = self.port or free_port()
        self.http_port = self.port
        super().start()
        return self

    def stop(self) -> None:
        # SIGINT: uWSGI's immediate stop. A test server has nothing to finish, and SIGTERM's graceful stop
        # (the shipped hook) waits for busy workers.
        if self.process:
            self.process.stop(signum=signal.SIGINT)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1, for testing the HTTPS server block."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        # Clients check the address against the SAN, not the CN (an IP in the CN alone is refused).
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class NginxServer:
    """Real nginx with the shipped site config, only its ports and paths changed."""

    directory: Path
    uwsgi_socket: Path
    http_port: int = 0
    https_port: int = 0
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def render(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in ("uwsgi_params", "mime.types"):
            shutil.copy(Path("/etc/nginx") / name, self.directory / name)
        cert, key = self_signed_certificate(self.directory)
        locations = (PROJECT_ROOT / "nginx/weixin-locations.conf").read_text()
        locations = locations.replace("/srv/weixin/", f"{PROJECT_ROOT}/")
        locations = locations.replace("/var/log/nginx/", f"{self.directory}/")
        (self.directory / "weixin-locations.conf").write_text(locations)
        site = (PROJECT_ROOT / "nginx/weixin.conf").read_text()
        site = "\n".join(line for line in site.splitlines() if "[::]" not in line)  # loopback IPv4 only
        site = (
            site.replace("unix:/run/weixin/uwsgi.sock", f"unix:{self.uwsgi_socket}")
            .replace("listen 80;", f"listen 127.0.0.1:{self.http_port};")
            .replace("listen 443 ssl", f"listen 127.0.0.1:{self.https_port} ssl")
            .replace("/etc/ssl/weixin/fullchain.pem", str(cert))
            .replace("/etc/ssl/weixin/privkey.pem", str(key))
            .replace("/srv/weixin/nginx/weixin-locations.conf", str(self.directory / "weixin-locations.conf"))
        )
        (self.directory / "site.conf").write_text(site)
        temp = self.directory / "temp"
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must reach uWSGI's 0660 socket
        main = (
            f"{user}worker_processes 1;\npid {self.directory}/nginx.pid;\nerror_log {self.directory}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n  include mime.types;\n  default_type application/octet-stream;\n"
            f"  access_log {self.directory}/access.log;\n"
            f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
            "  include site.conf;\n}\n"
        )
        temp.mkdir(exist_ok=True)
        config = self.directory / "nginx.conf"
        config.write_text(main)
        return config

    def start(self) -> NginxServer:
        self.http_port = self.http_port or free_port()
        self.https_port = self.https_port or free_port()
        config = self.render()
        argv = [find_program("nginx"), "-p", str(self.directory), "-c", str(config), "-g", "daemon off;"]
        self.process = ManagedProcess("nginx", argv, self.directory / "nginx.out", cwd=self.directory).start()
        try:
            wait_for_tcp(self.http_port)
        except TimeoutError:
            self.stop()
            raise RuntimeError("nginx did not start:\n" + self.process.log_text()[-3000:]) from None
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop(signum=signal.SIGQUIT)


@dataclass
class SandboxProcess:
    """The sandbox WeChat API platform (`python -m sandbox serve`) as a child process on loopback."""

    directory: Path
    appid: str
    secret: str
    port: int = 0
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SandboxProcess:
        self.port = self.port or free_port()
        argv = [
            sys.executable, "-m", "sandbox", "serve",
            "--port", str(self.port), "--appid", self.appid, "--secret", self.secret,
        ]
        self.process = ManagedProcess("sandbox", argv, self.directory / "sandbox.log").start()
        try:
            wait_for_tcp(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError("the sandbox did not start:\n" + self.process.log_text()[-3000:]) from None
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class TokenServiceProcess:
    """`python -m token_service run` as a child process; `env` carries WECHAT_APPID/SECRET, REDIS_URL, ..."""

    directory: Path
    env: dict[str, str]
    process: ManagedProcess | None = None

    def start(self) -> TokenServiceProcess:
        argv = [sys.executable, "-m", "token_service", "run"]
        env = {**os.environ, **self.env}
        self.process = ManagedProcess("token_service", argv, self.directory / "token_service.log", env=env).start()
        return self

    def wait_for_token(self, timeout: float = 20.0) -> str:
        """The access_token once the daemon has stored one (read as any consumer does)."""
        import redis

        from token_service.consumer import TokenUnavailable, get_access_token

        client = redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    return get_access_token(client, self.env["WECHAT_APPID"])
                except (TokenUnavailable, redis.ConnectionError):
                    if time.monotonic() > deadline or not (self.process and self.process.alive()):
                        log = self.process.log_text()[-3000:] if self.process else ""
                        raise RuntimeError("token_service stored no token:\n" + log) from None
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class SlowReplyWorker:
    """`python -m slow_replies worker`: delivers background replies that missed the deadline."""

    directory: Path
    env: dict[str, str]
    process: ManagedProcess | None = None

    def start(self) -> SlowReplyWorker:
        argv = [sys.executable, "-m", "slow_replies", "worker"]
        env = {**os.environ, **self.env}
        self.process = ManagedProcess("slow_replies", argv, self.directory / "worker.log", env=env).start()
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
