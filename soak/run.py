"""Run the soak: Redis, uWSGI (shipped uwsgi.xml) and nginx (shipped site) on loopback; client threads
send every kind of push in every mode as WeChat does (re-sending on no answer, and re-sending answered
ones too), while faults are injected; then count what happened and sample the workers' memory."""

from __future__ import annotations

import collections
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devstack.processes import PROJECT_ROOT, NginxServer, RedisServer, UwsgiServer
from sandbox import checks, delivery
from sandbox.messages import KINDS, Account, Push, build_message, build_push

TOKEN = "soaktoken2026"
APPID = "wx5oak000000000001"
AES_KEY = "soakSoakSoakSoakSoakSoakSoakSoakSoakSoak123"
ACCOUNT = Account(TOKEN, APPID, AES_KEY)
MODES = ("plain", "compatible", "safe")
COUNTED_PREFIX = "soak-"
# dedupe.REDIS_BACKOFF_SECONDS: the app skips Redis this long after a failure. Redis restarted empty has
# also lost the replies stored before the fault, so a WeChat re-send of a message answered just before it
# can be handled again when it arrives after the back-off: the window covers two back-offs.
REDIS_DEDUPE_BACKOFF = 5.0
REDIS_BACKOFF_ROUNDS = 2
# A killed worker's claim: WeChat's retry takes it over at once (dedupe.handler_is_dead); its handler may
# have run already, so a second run within this window counts as "during a fault".
CLAIM_LEASE = 10.0


@dataclass
class SoakSettings:
    duration: float = 180.0
    clients: int = 8
    workers: int = 2
    counted_share: float = 0.5  # pushes that run the counting handler (text "soak-N")
    resend_share: float = 0.15  # answered pushes re-sent anyway, as WeChat does when our answer was late
    faults: tuple[str, ...] = ("redis-restart", "worker-kill")


@dataclass
class FaultWindow:
    name: str
    start: float
    end: float  # until when its effects are expected (back-off, lease)

    def covers(self, moment: float) -> bool:
        return self.start <= moment <= self.end


@dataclass
class CountedMessage:
    content: str
    sent_at: list[float] = field(default_factory=list)
    replied: bool = False  # some answer carried this message's own reply
    answered_success: int = 0  # answers of `success` (a retry while the first delivery's claim is pending)


@dataclass
class Figures:
    started_at: str = ""
    duration: float = 0.0
    clients: int = 0
    workers: int = 0
    pushes: int = 0
    requests: int = 0
    resends_after_no_answer: int = 0
    deliberate_resends: int = 0
    answers_5xx: int = 0
    answers_4xx: int = 0
    final_failures: int = 0  # pushes WeChat gave up on (no usable answer after its retries)
    check_errors: int = 0  # 200 answers that WeChat would reject (sandbox.checks)
    counted: int = 0
    handled_runs: int = 0
    duplicated: int = 0
    duplicated_in_fault_windows: int = 0
    lost: int = 0
    lost_in_fault_windows: int = 0
    faults: list[str] = field(default_factory=list)
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def duplicated_outside_faults(self) -> int:
        return self.duplicated - self.duplicated_in_fault_windows

    @property
    def lost_outside_faults(self) -> int:
        return self.lost - self.lost_in_fault_windows


def soak_replies(directory: Path) -> Path:
    """The shipped replies plus a rule whose handler counts its runs (soak/handlers.py)."""
    document = yaml.safe_load((PROJECT_ROOT / "replies.yaml").read_text())
    rule = {"regex": f"^{COUNTED_PREFIX}", "reply": {"handler": "soak.handlers:count_handling"}}
    document["keywords"] = [rule, *document["keywords"]]
    path = directory / "replies.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


def rss_megabytes(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Soak:
    """Start everything in a temp directory, run the load for `settings.duration`, stop, count."""

    def __init__(self, settings: SoakSettings, log=print) -> None:
        self.settings = settings
        self.log = log
        self.lock = threading.Lock()
        self.figures = Figures(duration=settings.duration, clients=settings.clients, workers=settings.workers)
        self.counted: dict[str, CountedMessage] = {}
        self.windows: list[FaultWindow] = []
        self.rss_samples: list[tuple[float, float]] = []
        self.sequence = iter(range(10**12))
        self.stopping = threading.Event()

    # --- the servers -----------------------------------------------------------------------------
    def start_servers(self, directory: Path) -> None:
        self.handled_log = directory / "handled.log"
        self.handled_log.touch()
        self.redis = RedisServer(directory / "redis").start()
        env = {
            "WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_ENCODING_AES_KEY": AES_KEY,
            "REDIS_URL": self.redis.url, "REPLIES_FILE": str(soak_replies(directory)),
            "SOAK_HANDLED_LOG": str(self.handled_log), "DOTENV_FILE": "/dev/null", "LOG_LEVEL": "WARNING",
        }
        self.uwsgi = UwsgiServer(directory / "uwsgi", env, workers=self.settings.workers).start()
        self.nginx = NginxServer(directory / "nginx", self.uwsgi.socket_path).start()
        self.url = self.nginx.url + "/weixin"

    def stop_servers(self) -> None:
        for server in (getattr(self, "nginx", None), getattr(self, "uwsgi", None), getattr(self, "redis", None)):
            if server is not None:
                server.stop()

    # --- the load --------------------------------------------------------------------------------
    def next_push(self, rng: random.Random) -> tuple[Push, CountedMessage | None]:
        number = next(self.sequence)
        user = f"oSoakFollower{number % 5000:015d}"
        mode = rng.choice(MODES)
        if rng.random() < self.settings.counted_share:
            content = f"{COUNTED_PREFIX}{number}"
            message = build_message("text", content=content, from_user=user)
            record = CountedMessage(content)
            with self.lock:
                self.counted[content] = record
            return build_push(message, ACCOUNT, mode), record
        kind = rng.choice(KINDS)
        options: dict[str, str] = {}
        if kind == "text":
            options["content"] = rng.choice(["微博", "帮助", "你好", "hello", "随便说点什么"])
        elif kind == "event":
            options["event_name"] = "user_info_modified"  # an event the replies file does not know
        message = build_message(kind, from_user=user, **options)
        return build_push(message, ACCOUNT, mode), None

    def judge(self, push: Push, answer: delivery.Delivery, record: CountedMessage | None) -> None:
        verdict = checks.examine(push, answer, ACCOUNT)
        with self.lock:
            figures = self.figures
            figures.requests += len(answer.attempts)
            figures.resends_after_no_answer += len(answer.attempts) - 1
            for attempt in answer.attempts:
                if attempt.status is not None and attempt.status >= 500:
                    figures.answers_5xx += 1
                elif attempt.status is not None and attempt.status >= 400:
                    figures.answers_4xx += 1
            if not answer.answered:
                figures.final_failures += 1
                figures.problems.append(f"no usable answer: {'; '.join(a.failure for a in answer.attempts)}")
                return
            errors = [problem for problem in verdict.errors if problem.code != "retried"]
            if errors:
                figures.check_errors += 1
                figures.problems.append(f"{push.message.kind} {push.mode}: {errors[0].message}")
            if record is not None and verdict.reply is not None:
                if verdict.reply.field("Content") == f"handled {record.content}":
                    record.replied = True
                elif verdict.reply.msg_type == "none":
                    record.answered_success += 1

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        deadline = time.monotonic() + self.settings.duration
        while time.monotonic() < deadline and not self.stopping.is_set():
            push, record = self.next_push(rng)
            resend = rng.random() < self.settings.resend_share
            parallel: threading.Thread | None = None
            if resend and rng.random() < 0.5:
                # A retry that arrives while the first delivery is still being handled.
                parallel = threading.Thread(target=self.deliver, args=(push, record, rng.random() * 0.01))
                parallel.start()
            self.deliver(push, record)
            if resend:
                if parallel is not None:
                    parallel.join()
                else:
                    self.deliver(push, record)
                with self.lock:
                    self.figures.deliberate_resends += 1
            with self.lock:
                self.figures.pushes += 1

    def deliver(self, push: Push, record: CountedMessage | None, delay: float = 0.0) -> None:
        if delay:
            time.sleep(delay)
        if record is not None:
            with self.lock:
                record.sent_at.append(time.monotonic())
        self.judge(push, delivery.send(self.url, push), record)

    # --- faults and memory -----------------------------------------------------------------------
    def inject_faults(self) -> None:
        faults = self.settings.faults
        for index, name in enumerate(faults):
            if self.stopping.wait(self.settings.duration * (index + 1) / (len(faults) + 1)
                                  - (time.monotonic() - self.started)):
                return
            start = time.monotonic()
            if name == "redis-restart":
                self.redis.stop()
                time.sleep(1.5)
                self.redis.start()
                end = time.monotonic() + REDIS_DEDUPE_BACKOFF * REDIS_BACKOFF_ROUNDS + 1.0
                description = "Redis stopped for 1.5 s and started empty"
            elif name == "worker-kill":
                pids = self.uwsgi.worker_pids()
                if not pids:
                    continue
                os.kill(random.choice(pids), signal.SIGKILL)
                end = time.monotonic() + CLAIM_LEASE + 2.0
                description = "a uWSGI worker killed with SIGKILL (the master respawns it)"
            else:
                raise ValueError(f"unknown fault {name!r}")
            self.windows.append(FaultWindow(name, start, end))
            elapsed = start - self.started
            with self.lock:
                self.figures.faults.append(f"{description} at {elapsed:.0f} s")
            self.log(f"fault at {elapsed:.0f} s: {description}")

    def sample_memory(self) -> None:
        while not self.stopping.wait(1.0):
            sizes = [rss_megabytes(pid) for pid in self.uwsgi.worker_pids()]
            if sizes:
                self.rss_samples.append((time.monotonic() - self.started, max(sizes)))

    # --- the whole run ---------------------------------------------------------------------------
    def run(self) -> Figures:
        self.figures.started_at = time.strftime("%Y-%m-%d %H:%M %Z")
        with tempfile.TemporaryDirectory(prefix="soak-") as temp:
            try:
                self.start_servers(Path(temp))
                self.started = time.monotonic()
                helpers = [threading.Thread(target=self.inject_faults, daemon=True),
                           threading.Thread(target=self.sample_memory, daemon=True)]
                clients = [threading.Thread(target=self.client, args=(seed,)) for seed in range(self.settings.clients)]
                for thread in helpers + clients:
                    thread.start()
                for thread in clients:
                    thread.join()
                self.stopping.set()
                for thread in helpers:
                    thread.join(30)
                self.count_handling(self.handled_log.read_text().splitlines())
            finally:
                self.stopping.set()
                self.stop_servers()
        return self.figures

    def in_fault_window(self, record: CountedMessage) -> bool:
        return any(window.covers(moment) for window in self.windows for moment in record.sent_at)

    def count_handling(self, lines: list[str]) -> None:
        runs = collections.Counter(lines)
        figures = self.figures
        figures.counted = len(self.counted)
        figures.handled_runs = sum(runs.values())
        for content, record in self.counted.items():
            if runs[content] > 1:
                figures.duplicated += 1
                if self.in_fault_window(record):
                    figures.duplicated_in_fault_windows += 1
                else:
                    moments = ", ".join(f"{moment - self.started:.2f} s" for moment in record.sent_at)
                    figures.problems.append(f"{content}: handled {runs[content]}x outside a fault (sent at {moments})")
            if not record.replied:
                figures.lost += 1
                figures.lost_in_fault_windows += self.in_fault_window(record)
                figures.problems.append(
                    f"{content}: never got its reply (handled {runs[content]}x, {record.answered_success} "
                    f"`success` answers, {len(record.sent_at)} deliveries)"
                )
        warm = [size for moment, size in self.rss_samples if moment >= min(10.0, figures.duration / 4)]
        if warm:
            tenth = max(1, len(warm) // 10)
            figures.rss_start_mb = statistics.median(warm[:tenth])
            figures.rss_end_mb = statistics.median(warm[-tenth:])
            figures.rss_max_mb = max(warm)
