"""The web process's side of a background reply: queue the job once, wait for its result until the deadline,
and answer with it, or with nothing (`success`) and leave the worker to send it."""

from __future__ import annotations

import logging
import time

import redis
from rq import Worker

from slow_replies.handoff import PASSIVE, WAITING, HandOff
from slow_replies.jobs import JobSpec, enqueue, job_id_for, make_queue
from weixin import redis_clients
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


class BackgroundReplies:
    """The web process's side of the hand-off: its connections and when it last looked for a worker. One per
    App (weixin/app.py); built before uWSGI forks, its clients open their connections in each worker."""

    def __init__(self, settings: Settings) -> None:
        client = redis_clients.request_path(settings.redis_url)
        # Blocks for the result for up to the whole deadline.
        waiter = redis_clients.result_waiter(settings.redis_url, settings.reply_deadline)
        self.handoff = HandOff(client, waiter)
        self.queue = make_queue(client)
        self._next_worker_check = 0.0

    def warn_if_no_worker(self) -> None:
        """Jobs wait safely in Redis without a worker, but nobody gets an answer: say so (looked at once a
        minute; two threads may both look, which only costs a second look)."""
        if time.monotonic() < self._next_worker_check:
            return
        self._next_worker_check = time.monotonic() + WORKER_CHECK_INTERVAL
        if Worker.count(queue=self.queue) == 0:
            log.warning("no slow_replies worker is running: background replies wait in Redis until one starts "
                        "(python -m slow_replies worker, or systemctl start weixin-worker)")


def answer_or_defer(reply: Reply, message: Message, retry_key: str, background: BackgroundReplies, deadline: float,
                    record: RequestRecord) -> str | None:
    """The passive reply XML if the worker's result is ready before `deadline` (a time.perf_counter() value),
    else None (answer `success`; the worker sends the result later). Sets `record.reply`."""
    job_id = job_id_for(retry_key)
    try:
        handoff = background.handoff
        remaining = deadline - time.perf_counter()
        spec = JobSpec(job_id, handler_path(reply.value) or "", dict(message.fields), time.time() + remaining,
                       str(record.rule))
        created = handoff.create(job_id, spec.deadline, spec.rule)
        taken = None if created else handoff.take(job_id, final=False)
        if created or taken.state == WAITING:
            # A retry finding the job still waiting queues it too, in case the first delivery died between the
            # two steps; rq refuses a second job with the same id.
            enqueue(background.queue, spec)
            background.warn_if_no_worker()
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
