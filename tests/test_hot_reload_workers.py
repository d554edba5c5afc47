"""Hot reload under uWSGI with the shipped uwsgi.xml and 2 workers: after an edit of the replies file (in place or
by rename), every worker answers from the saved rules within a second, on its first message, including a worker
that was idle and one that was respawned (uWSGI forks it from the master, which loaded the file at start-up).

Each version of the test file has a default reply naming it and a rule `hold-vN` that holds the worker until the
test releases it. Two messages `hold-vN` sent together therefore check both workers: a worker with the new rules
holds its message, so the other message can only be taken by the other worker; a worker with older rules answers
at once with its default."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from devstack.processes import RedisServer, UwsgiServer, free_port
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.reload_handlers import HELD_KEY, HOLD_SECONDS, release_key
from tests.slow_replies.conftest import wait_until
from tests.wechat_requests import fixture, post, reply_fields, with_fresh_ids

WORKERS = 2
PROMISE_SECONDS = 1.0  # README: an edit is served within a second
RELOADED = "replies file reloaded"
# A file of a realistic size, which takes tens of milliseconds to load: long enough that a reload racing the
# request that noticed the edit loses the race.
FILLER_RULES = 500


def rules(version: str) -> str:
    filler = "".join(f"  - match: question {number}\n    reply: answer {number}\n" for number in range(FILLER_RULES))
    return (
        "keywords:\n"
        f"{filler}"
        f"  - match: hold-{version}\n"
        '    reply: {handler: "tests.reload_handlers:hold"}\n'
        f"default: rules {version}\n"
    )


def save_in_place(path: Path, version: str) -> float:
    path.write_text(rules(version), encoding="utf-8")
    return time.monotonic()


def save_by_rename(path: Path, version: str) -> float:
    """As editors and deploy tools do: write a new file beside it, then rename it over the old one."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(rules(version), encoding="utf-8")
    os.replace(temporary, path)
    return time.monotonic()


def wait_for_the_promise(saved_at: float) -> None:
    """The README's promise is the only wait: a second after the save (or after the workers' start)."""
    time.sleep(max(0.0, saved_at + PROMISE_SECONDS - time.monotonic()))


@pytest.fixture()
def replies_file(tmp_path: Path) -> Path:
    path = tmp_path / "replies.yaml"
    path.write_text(rules("v1"), encoding="utf-8")
    return path


@pytest.fixture()
def server(tmp_path: Path, redis_server: RedisServer, replies_file: Path) -> Iterator[UwsgiServer]:
    env = {
        "WECHAT_TOKEN": TEST_TOKEN,
        "WECHAT_APPID": TEST_APPID,
        "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
        "REDIS_URL": redis_server.url,
        "REPLIES_FILE": str(replies_file),
        "LOG_LEVEL": "INFO",
        "DOTENV_FILE": "/dev/null",
    }
    # One thread per worker: a held message then occupies its worker, which is how the test tells the workers
    # apart (with the shipped uwsgi.xml's threads one worker could take both messages). Rules are per process.
    app = UwsgiServer(tmp_path / "uwsgi", env, workers=WORKERS, http_port=free_port(),
                      extra_options=("--threads", "1")).start()
    wait_until(lambda: len(app.worker_pids()) == WORKERS, 30, describe=lambda: app.process.log_text()[-2000:])
    yield app
    app.stop()


@pytest.fixture()
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


def send_text(app: UwsgiServer, content: str) -> str:
    xml = with_fresh_ids(fixture("messages/text.xml").replace("微博".encode(), content.encode()))
    response = post(app.url + "/weixin", xml, TEST_TOKEN, timeout=HOLD_SECONDS + 10)
    assert response.status_code == 200, response.text
    return reply_fields(response.text)["Content"] if response.text != "success" else "success"


def answers_of_every_worker(app: UwsgiServer, client: redis.Redis, version: str) -> list[str]:
    """Send `hold-<version>` once per worker, together; release every worker that holds one; the answers, sorted."""
    client.delete(HELD_KEY)
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(send_text, app, f"hold-{version}") for _ in range(WORKERS)]
        # Either every worker holds a message, or one answered (from other rules) and the rest may never arrive.
        wait_until(lambda: client.llen(HELD_KEY) >= WORKERS or any(f.done() for f in futures), HOLD_SECONDS)
        for pid in client.lrange(HELD_KEY, 0, -1):
            client.rpush(release_key(pid.decode()), 1)
        answers = sorted(future.result() for future in futures)
    client.delete(HELD_KEY)
    return answers


def held_by_every_worker(app: UwsgiServer) -> list[str]:
    return sorted(f"held by {pid}" for pid in app.worker_pids())


@pytest.mark.parametrize("save", [save_in_place, save_by_rename])
def test_idle_workers_answer_from_an_edit_within_a_second(server: UwsgiServer, client: redis.Redis,
                                                          replies_file: Path, save) -> None:
    assert answers_of_every_worker(server, client, "v1") == held_by_every_worker(server)
    for version in ("v2", "v3"):  # both workers idle since their last message
        saved_at = save(replies_file, version)
        wait_for_the_promise(saved_at)
        assert answers_of_every_worker(server, client, version) == held_by_every_worker(server), version


def test_respawned_workers_answer_from_the_saved_rules_not_the_masters_copy(server: UwsgiServer,
                                                                            client: redis.Redis,
                                                                            replies_file: Path) -> None:
    saved_at = save_by_rename(replies_file, "v2")  # the master still holds v1, loaded at start-up
    wait_for_the_promise(saved_at)
    old_workers = server.worker_pids()
    assert answers_of_every_worker(server, client, "v2") == held_by_every_worker(server)

    reloads = server.process.wait_for_log(RELOADED, count=WORKERS).count(RELOADED)
    for pid in old_workers:
        os.kill(pid, signal.SIGKILL)
    assert wait_until(
        lambda: len(server.worker_pids()) == WORKERS and not set(server.worker_pids()) & set(old_workers), 30
    ), server.process.log_text()[-2000:]
    # Each new worker loads the saved file as it starts (uWSGI's postfork), before any message reaches it.
    log = server.process.wait_for_log(RELOADED, count=reloads + WORKERS)
    assert log.count(RELOADED) == reloads + WORKERS, log[-2000:]
    wait_for_the_promise(time.monotonic())  # within a second of the respawned workers' start
    assert answers_of_every_worker(server, client, "v2") == held_by_every_worker(server)

    saved_at = save_in_place(replies_file, "v3")
    wait_for_the_promise(saved_at)
    assert answers_of_every_worker(server, client, "v3") == held_by_every_worker(server)


# --- the same, as pure functions of LiveRules (no uWSGI) -------------------------------------------------------


def first_reply(book) -> str:
    return book.current().default.value.text


def test_an_edit_of_the_same_size_and_mtime_is_still_seen(tmp_path: Path) -> None:
    """Some filesystems keep mtime in whole seconds: a second edit of the same size can leave the stat unchanged."""
    from weixin.rules import LiveRules

    path = tmp_path / "replies.yaml"
    path.write_text("default: first\n")
    stat = path.stat()
    now = [0.0]
    book = LiveRules(path, check_interval=0.5, clock=lambda: now[0])
    path.write_text("default: again\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    now[0] = 1.0
    assert first_reply(book) == "again"


def test_after_fork_loads_the_saved_file_before_any_request(tmp_path: Path) -> None:
    from weixin.rules import LiveRules

    path = tmp_path / "replies.yaml"
    path.write_text("default: loaded by the master\n")
    book = LiveRules(path, clock=lambda: 0.0, background=True)
    path.write_text("default: saved since\n")
    book.after_fork()
    assert book.rules.default.value.text == "saved since"  # without a request (current()) in between


def test_the_request_that_notices_an_edit_waits_for_a_quick_load(tmp_path: Path) -> None:
    from weixin.rules import LiveRules

    path = tmp_path / "replies.yaml"
    path.write_text(rules("v1"))
    now = [0.0]
    book = LiveRules(path, clock=lambda: now[0], background=True, reload_wait=30.0)
    path.write_text(rules("v2"))
    now[0] = 1.0
    assert first_reply(book) == "rules v2"


def test_an_in_place_copy_that_puts_back_the_old_mtime_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cp -p new.yaml replies.yaml`: same inode, same size, the source's (older) mtime; only ctime tells."""
    from weixin.rules import LiveRules, live

    monkeypatch.setattr(live, "RECENT_EDIT_NS", 0)  # the stat alone, as long after the last edit
    path = tmp_path / "replies.yaml"
    path.write_text("default: first\n")
    stat = path.stat()
    now = [0.0]
    book = LiveRules(path, check_interval=0.5, clock=lambda: now[0])
    path.write_text("default: again\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    now[0] = 1.0
    assert first_reply(book) == "again"
