"""The worker runs only the job function this project enqueues, and only handlers of the replies file's
background rules: a job planted in Redis naming anything else (e.g. `os.system`) is refused and logged,
never imported or called (issue 13, item 7). Real Redis, the real worker process, the app under uWSGI."""

from __future__ import annotations

import time
from pathlib import Path

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.webhook import Webhook

from devstack.processes import AppServer, RedisServer
from sandbox.server import SandboxServer
from slow_replies.allowlist import AllowlistedJob, HandlerAllowlist, background_handlers
from slow_replies.jobs import JOB_FUNCTION, QUEUE_NAME, JobSpec
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.slow_replies.conftest import Worker, delivered_to, new_follower, send, text_message, wait_until
from weixin.rules import load_rules, resolve_handler


def planted_queue(redis_server: RedisServer) -> Queue:
    """What someone with access to Redis sees: the worker's queue, to which anything can be pushed."""
    return Queue(QUEUE_NAME, connection=redis.Redis.from_url(redis_server.url), serializer=JSONSerializer)


def job_status(job: Job) -> JobStatus:
    return Job.fetch(job.id, connection=job.connection, serializer=JSONSerializer).get_status()


def planted_job(redis_server: RedisServer, worker: Worker, function: str, *args: object,
                **options: object) -> tuple[Job, str]:
    """Push a job straight onto the worker's queue and wait until the worker is done with it: the job, and the
    worker's log then."""
    job = planted_queue(redis_server).enqueue_call(function, args=args, **options)
    wait_until(lambda: job_status(job) in (JobStatus.FAILED, JobStatus.FINISHED), timeout=20,
               describe=lambda: worker.log_text()[-3000:])
    return job, worker.log_text()


def test_a_job_naming_os_system_is_refused_and_never_run(
    redis_server: RedisServer, worker: Worker, tmp_path: Path
) -> None:
    marker = tmp_path / "planted-job-ran"
    job, log = planted_job(redis_server, worker, "os.system", f"touch {marker}", description="planted")

    assert job_status(job) == JobStatus.FAILED
    assert not marker.exists()
    assert f"refused job {job.id}: it names the function 'os.system'" in log
    assert worker.process.alive()


def test_a_job_naming_a_callback_outside_the_allowlist_is_refused(
    redis_server: RedisServer, worker: Worker, tmp_path: Path
) -> None:
    marker = tmp_path / "planted-callback-ran"
    job, log = planted_job(redis_server, worker, "os.system", f"touch {marker}", on_failure="os.abort")

    assert not marker.exists()
    assert f"refused job {job.id}: it names the function 'os.system'" in log
    assert f"refused job {job.id}: it names the callback 'os.abort'" in log


def test_a_job_naming_a_webhook_is_refused_and_sends_nothing(
    redis_server: RedisServer, worker: Worker, book_source: BookSource
) -> None:
    number = new_isbn13()
    hook = Webhook(f"{book_source.url}/api/books?bibkeys=ISBN:{number}", "failed")  # any URL the worker reaches
    job, log = planted_job(redis_server, worker, JOB_FUNCTION, {}, webhooks=[hook])

    assert f"refused job {job.id}: it names a webhook (127.0.0.1)" in log
    assert book_source.requests_for(number) == 0


def test_a_job_naming_a_handler_outside_the_replies_file_is_refused(
    redis_server: RedisServer, worker: Worker
) -> None:
    spec = JobSpec("reply-planted-handler", "os:system", {"MsgType": "text", "Content": "x"}, time.time(), "-")
    _, log = planted_job(redis_server, worker, JOB_FUNCTION, spec.to_json(), job_id=spec.job_id)

    assert "refused handler 'os:system' of job reply-planted-handler" in log
    assert "background handler os:system failed" not in log  # it was never called


def test_legitimate_background_replies_still_run(
    app: AppServer, wechat: SandboxServer, book_source: BookSource, worker: Worker
) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    book_source.slow(number, 2.0)  # past the deadline: the worker sends the card with custom/send
    assert send(app, text_message(openid, number)).text == "success"
    wait_until(lambda: delivered_to(wechat, openid), timeout=20, describe=lambda: worker.log_text()[-3000:])


def test_a_background_rule_under_the_old_handler_name_allows_the_handler_under_either_name(tmp_path: Path) -> None:
    replies_file = tmp_path / "replies.yaml"
    replies_file.write_text('keywords:\n  - regex: "^978"\n    reply: {handler: "books:lookup", background: true}\n',
                            encoding="utf-8")

    assert background_handlers(load_rules(replies_file)) == {"handlers.books:lookup"}
    # The web process enqueues the new name; a job queued before an upgrade names the old one.
    allowlist = HandlerAllowlist(replies_file)
    assert allowlist.allows("handlers.books:lookup")
    assert allowlist.allows("books:lookup")
    assert resolve_handler("books:lookup") is resolve_handler("handlers.books:lookup")
    assert not allowlist.allows("handlers.books:fetch_book")


def test_the_workers_job_class_hands_its_context_to_the_job_function(redis_server: RedisServer) -> None:
    """The worker builds its WorkerContext once and binds it to its job class; rq builds the jobs from that
    class."""
    # Not the redis_client fixture: it empties the Redis this module's app, worker and token share, and the
    # legitimate-reply test after it in a random order then found no access_token to send with.
    context = object()
    job_class = AllowlistedJob.for_context(context)
    connection = redis.Redis.from_url(redis_server.url)  # create() writes nothing
    job = job_class.create(JOB_FUNCTION, args=({},), connection=connection, serializer=JSONSerializer)
    assert job.func.func.__name__ == "perform_background_reply" and job.func.keywords == {"context": context}
    assert AllowlistedJob.worker_context is None  # the base class is left as it was
