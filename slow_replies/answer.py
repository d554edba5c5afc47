"""The web process's side of a background reply: queue the job once, wait for its result until the deadline,
and answer with it, or with nothing (`success`) and leave the worker to send it."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, Worker

from slow_replies.handoff import PASSIVE, WAITING, HandOff
from slow_replies.jobs import JobSpec, enqueue, job_id_for, make_queue
from weixin.config import Settings
from weixin.messages import Message, reply_type
from weixin.request_record import RequestRecord
from weixin.rules import Reply, handler_path

log = logging.getLogger("weixin")

# Redis ends a blocking wait on its own clock tick (hz 10: up to 0.1 s late), so the last stretch before
# the deadline is polled instead.
REDIS_TIMER_SLACK_SECONDS = 0.1
POLL_SECONDS = 0.01
WORKER_CHECK_INTERVAL = 60.0
_next_worker_check = 0.0


@dataclass
class _Connections:
    handoff: HandOff
    queue: Queue


_connections: dict[tuple[int, str], _Connections] = {}


def _connections_for(settings: Settings) -> _Connections:
    """Made in each uWSGI worker after the fork: short timeouts, no retries (the request has seconds)."""
    key = (os.getpid(), settings.redis_url)
    if key not in _connections:
        options: dict[str, Any] = {"socket_connect_timeout": 0.25, "retry": Retry(NoBackoff(), 0)}
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, **options)
        # Blocks for the result for up to the whole deadline.
        waiter = redis.Redis.from_url(settings.redis_url, socket_timeout=settings.reply_deadline + 0.5, **options)
        _connections[key] = _Connections(HandOff(client, waiter), make_queue(client))
    return _connections[key]


def _warn_if_no_worker(queue: Queue) -> None:
    """Jobs wait safely in Redis without a worker, but nobody gets an answer: say so (looked at once a minute)."""
    global _next_worker_check
    if time.monotonic() < _next_worker_check:
        return
    _next_worker_check = time.monotonic() + WORKER_CHECK_INTERVAL
    if Worker.count(queue=queue) == 0:
        log.warning("no slow_replies worker is running: background replies wait in Redis until one starts "
                    "(python -m slow_replies worker, or systemctl start weixin-worker)")


def answer_or_defer(reply: Reply, message: Message, retry_key: str, settings: Settings, deadline: float,
                    record: RequestRecord) -> str | None:
    """The passive reply XML if the worker's result is ready before `deadline` (a time.perf_counter() value),
    else None (answer `success`; the worker sends the result later). Sets `record.reply`."""
    job_id = job_id_for(retry_key)
    try:
        connections = _connections_for(settings)
        handoff = connections.handoff
        remaining = deadline - time.perf_counter()
        spec = JobSpec(job_id, handler_path(reply.value) or "", dict(message.fields), time.time() + remaining,
                       str(record.rule))
        created = handoff.create(job_id, spec.deadline, spec.rule)
        taken = None if created else handoff.take(job_id, final=False)
        if created or taken.state == WAITING:
            # A retry finding the job still waiting queues it too, in case the first delivery died between the
            # two steps; rq refuses a second job with the same id.
            enqueue(connections.queue, spec)
            _warn_if_no_worker(connections.queue)
        while taken is None or taken.state == WAITING:
            remaining = deadline - time.perf_counter()
            if remaining > REDIS_TIMER_SLACK_SECONDS:
                handoff.wait_for_result(job_id, remaining - REDIS_TIMER_SLACK_SECONDS)
            elif remaining > 0:
                time.sleep(min(remaining, POLL_SECONDS))
            taken = handoff.take(job_id, final=time.perf_counter() >= deadline)
    except (redis.RedisError, OSError) as error:
        log.error("background reply for rule %s: Redis failed (%s); answering success",
                  record.rule, type(error).__name__)
        record.reply = "error"
        return None
    if taken.state == PASSIVE:
        record.reply = reply_type(taken.xml)
        return taken.xml
    record.reply = "deferred" if taken.state == "abandoned" else f"background-{taken.state}"
    return None
