"""The web process's side of a background reply: queue the job once, wait for its result until the deadline,
and answer with it, or with nothing (`success`) and leave the worker to send it (answer_or_defer); in hold
mode, answer it on one of WeChat's deliveries instead (answer_through_retries, slow_replies/hold.py)."""

from __future__ import annotations

import logging
import time

import redis
from rq import Worker

from slow_replies.handoff import KEPT, NOTHING, PASSIVE, WAITING, HandOff, Taken
from slow_replies.hold import (
    HOLD,
    HOLD_WINDOW_SECONDS,
    STILL_WORKING_TEXT,
    Deliveries,
    KeptPages,
    account_mode,
    is_last_delivery,
)
from slow_replies.jobs import JobSpec, enqueue, job_id_for, make_queue
from weixin import redis_clients, render
from weixin.config import HOLD_SECONDS, Settings
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
        self.client = client
        self.settings = settings
        self.deliveries = Deliveries(client)
        self.kept = KeptPages(client, settings.appid, settings.held_result_ttl)

    def holds(self) -> bool:
        """Whether slow replies of this account go through WeChat's retries now (slow_replies/hold.py)."""
        return account_mode(self.settings.slow_reply_delivery, self.client, self.settings.appid) == HOLD

    def kept_page(self, message: Message, message_key: str) -> str | None:
        """For the keyword of a kept result or of a long text's next page: that page's reply XML, else None.
        A follower with nothing kept gets None: their keyword goes to the rules like any text."""
        if message.category != "message" or message.kind != "text":
            return None
        settings = self.settings
        if message.text("Content").strip() not in (settings.held_result_keyword, settings.more_keyword):
            return None
        try:
            return self.kept.next_page(message.sender, message_key)
        except redis.RedisError as error:
            log.error("kept pages: Redis failed (%s); the keyword goes to the rules", type(error).__name__)
            return None

    def warn_if_no_worker(self) -> None:
        """Jobs wait safely in Redis without a worker, but nobody gets an answer: say so (looked at once a
        minute; two threads may both look, which only costs a second look)."""
        if time.monotonic() < self._next_worker_check:
            return
        self._next_worker_check = time.monotonic() + WORKER_CHECK_INTERVAL
        if Worker.count(queue=self.queue) == 0:
            log.warning("no slow_replies worker is running: background replies wait in Redis until one starts "
                        "(python -m slow_replies worker, or systemctl start weixin-worker)")


def _queue_once(background: BackgroundReplies, spec: JobSpec, delivery: str) -> Taken | None:
    """Create the job's hand-off record and queue it, once per message: None when this delivery created it,
    else what the record holds now. A retry finding the job still waiting queues it too, in case the first
    delivery died between the two steps; rq refuses a second job with the same id, so the handler runs once."""
    handoff = background.handoff
    created = handoff.create(spec.job_id, spec.deadline, spec.rule, delivery)
    taken = None if created else handoff.take(spec.job_id, final=False)
    if created or taken.state == WAITING:
        enqueue(background.queue, spec)
        background.warn_if_no_worker()
    return taken


def _wait_for_result(handoff: HandOff, job_id: str, deadline: float, taken: Taken | None) -> Taken | None:
    """Wait for the worker's result until `deadline` (a time.perf_counter() value); what the record holds then
    (None or still waiting when nothing came)."""
    while taken is None or taken.state == WAITING:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        if remaining > REDIS_TIMER_SLACK_SECONDS:
            handoff.wait_for_result(job_id, remaining - REDIS_TIMER_SLACK_SECONDS)
        else:
            time.sleep(min(remaining, POLL_SECONDS))
        taken = handoff.take(job_id, final=False)
    return taken


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
        taken = _queue_once(background, spec, "custom")
        taken = _wait_for_result(handoff, job_id, deadline, taken)
        if taken is None or taken.state == WAITING:
            taken = handoff.take(job_id, final=True)  # the deadline: the worker sends it later
    except (redis.RedisError, OSError) as error:
        log.error("background reply for rule %s: Redis failed (%s); answering success",
                  record.rule, type(error).__name__)
        record.reply = "error"
        return None
    if taken.state == PASSIVE:
        record.reply = reply_type(taken.xml)
        return _with_more_kept(taken, message, background)
    record.reply = "deferred" if taken.state == "abandoned" else f"background-{taken.state}"
    return None


def _with_more_kept(taken: Taken, message: Message, background: BackgroundReplies) -> str | None:
    """The passive reply of `taken`; a long text's next pages are kept for the follower's keyword."""
    if taken.more:
        try:
            background.kept.keep(message.sender, taken.more)
        except redis.RedisError as error:
            log.error("a long reply's next pages are lost: Redis failed (%s)", type(error).__name__)
    return taken.xml


def still_working(message: Message, keyword: str) -> str | None:
    """The last delivery's answer when the result is not ready: how to fetch it later."""
    reply = render.reply_from_value(STILL_WORKING_TEXT.format(keyword=keyword), message)
    return render.render_reply(reply, message)


def answer_through_retries(reply: Reply, message: Message, retry_key: str, background: BackgroundReplies,
                           record: RequestRecord) -> str | None:
    """Hold mode (slow_replies/hold.py), for every delivery of a message: the passive reply if the result is
    ready by this delivery's deadline; else, on a delivery WeChat will retry, None after holding it past
    WeChat's patience (no answer: WeChat retries); on the last one, how to fetch the result later.
    Sets `record.reply`."""
    settings = background.settings
    job_id = job_id_for(retry_key)
    deadline = record.started + settings.reply_deadline
    hold_until = record.started + HOLD_SECONDS
    try:
        handoff = background.handoff
        number, since_first = background.deliveries.count(job_id, time.time())
        last = is_last_delivery(number, since_first)
        record.reply = f"hold-{number}"
        # The job's deadline is the last delivery's: until then the worker leaves a ready result to the web.
        job_deadline = time.time() - since_first + HOLD_WINDOW_SECONDS + settings.reply_deadline
        spec = JobSpec(job_id, handler_path(reply.value) or "", dict(message.fields), job_deadline, str(record.rule))
        taken = _wait_for_result(handoff, job_id, deadline, _queue_once(background, spec, HOLD))
        if taken is None or (taken.state == WAITING and last):
            taken = handoff.take(job_id, final=last)  # a result that came in the meantime is still taken
    except (redis.RedisError, OSError) as error:
        log.error("background reply for rule %s: Redis failed (%s); answering success",
                  record.rule, type(error).__name__)
        record.reply = "error"
        return None
    if taken.state == PASSIVE:
        record.reply = f"{reply_type(taken.xml)}-on-delivery-{number}"
        return _with_more_kept(taken, message, background)
    if last:
        return _last_answer(taken.state, number, message, background, record)
    # No answer: WeChat gives up on this delivery and sends the next; an answer would end the retries.
    record.reply = f"held-{number}"
    pause = hold_until - time.perf_counter()
    if pause > 0:
        time.sleep(pause)
    return None


def _last_answer(state: str, number: int, message: Message, background: BackgroundReplies,
                 record: RequestRecord) -> str | None:
    """The last delivery without a passive result: the result if the worker has already kept it (a delivery
    later than the job's deadline), nothing if the handler had nothing to say, else how to fetch it later."""
    if state == KEPT:
        try:
            page = background.kept.next_page(message.sender)
        except redis.RedisError:
            page = None
        if page is not None:
            record.reply = f"kept-on-delivery-{number}"
            return page
    if state == NOTHING:
        record.reply = f"nothing-on-delivery-{number}"
        return None
    record.reply = f"still-working-on-delivery-{number}"
    return still_working(message, background.settings.held_result_keyword)
