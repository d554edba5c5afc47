"""The job the worker runs for one message: run the handler, hand the result to the waiting web process or,
past its deadline, send it as a customer-service message. Safe to run again after a crash (see handoff)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from slow_replies.allowlist import HandlerAllowlist
from slow_replies.custom_message import NotSendable, custom_message, encode
from slow_replies.delivery import CustomMessageSender
from slow_replies.handoff import FAILED, FINISHED, PASSIVE, READY, SENDING, SENT, HandOff
from slow_replies.jobs import JobSpec
from weixin import messages, redis_clients, render
from weixin.config import Settings, load_settings
from weixin.render import HandlerContext
from weixin.rules import resolve_handler
from weixin.sessions import SessionStore

log = logging.getLogger("slow_replies")

# After the web process's deadline, how long it may still be finishing its own compare-and-set; either
# way only one side wins, this only spares a send when the passive reply was a few ms from going out.
DEADLINE_GRACE_SECONDS = 0.25
# No web process waits longer than REPLY_DEADLINE (at most 3.9 s): a deadline further away is a clock problem.
MAX_WAIT_FOR_WEB_SECONDS = 5.0


@dataclass
class WorkerContext:
    """What a job needs, built once by the worker (slow_replies/worker.py) before rq forks a process per job:
    each job's process inherits it, and its Redis clients open their own connections there (redis-py's pool
    starts over in a forked child; see weixin/redis_clients.py)."""

    settings: Settings
    handoff: HandOff
    sender: CustomMessageSender
    allowlist: HandlerAllowlist
    handler_context: HandlerContext

    @classmethod
    def build(cls, settings: Settings) -> WorkerContext:
        client = redis_clients.job(settings.redis_url)
        return cls(
            settings=settings,
            handoff=HandOff(client),
            sender=CustomMessageSender(settings.api_base, settings.appid, client),
            allowlist=HandlerAllowlist(settings.replies_file),
            handler_context=HandlerContext(settings, redis_clients.cache(settings.redis_url),
                                           SessionStore(client, settings.session_ttl, settings.session_max_bytes)),
        )


def masked_openid(openid: str) -> str:
    return f"{openid[:4]}…{openid[-4:]}" if len(openid) > 10 else "…"


def compute(spec: JobSpec, context: WorkerContext) -> tuple[str | None, str | None]:
    """The passive reply XML and the custom/send body (JSON text) of the handler's answer; (None, None) when
    it has nothing to say or fails (logged: the follower then gets nothing, as with a failing passive handler)."""
    if not context.allowlist.allows(spec.handler):
        # Never imported: the name came from Redis, where anyone with access could have written it.
        log.error("refused handler %r of job %s: no background rule of %s names it; not running it",
                  spec.handler, spec.job_id, context.settings.replies_file)
        return None, None
    try:
        # The web process's parser, so that the handler sees the message it would have seen.
        message = messages.parse(spec.fields)
        value = render.call_handler(resolve_handler(spec.handler), message.wechat, context.handler_context)
        reply = render.reply_from_value(value, message)
        xml = render.render_reply(reply, message, context.handler_context)
    except Exception:
        log.exception("background handler %s failed (rule=%s); nothing will be sent", spec.handler, spec.rule)
        return None, None
    try:
        body = custom_message(str(spec.fields.get("FromUserName") or ""), reply)
    except NotSendable as error:
        log.warning("job %s: %s; it can be a passive reply only", spec.job_id, error)
        body = None
    return xml, encode(body).decode("utf-8") if body else None


def perform_background_reply(data: dict[str, Any], context: WorkerContext | None = None) -> str:
    """rq's entry point: the job's final state (passive, sent, failed, nothing, or unknown). The worker's job
    class passes its `context` (slow_replies/allowlist.py); without one (a script re-running a job) it is
    built from the environment for this job."""
    spec = JobSpec.from_json(data)
    if context is None:
        context = WorkerContext.build(load_settings(require_token=False))
    handoff = context.handoff
    who = masked_openid(str(spec.fields.get("FromUserName") or ""))
    state = handoff.state(spec.job_id)
    if state in FINISHED:
        log.info("job %s already finished (%s); nothing to do", spec.job_id, state)
        return state
    if state == SENDING:
        log.warning(
            "job %s: an earlier run stopped while sending to %s; it may or may not have been delivered; "
            "not sending again (at most once)", spec.job_id, who,
        )
        return "unknown"
    if state == READY:  # an earlier run stored the result and died while waiting for the web process
        outcome = READY
    else:
        xml, body = compute(spec, context)
        outcome = handoff.finish(spec.job_id, xml, body)
    if outcome == READY:
        wait = min(spec.deadline + DEADLINE_GRACE_SECONDS - time.time(), MAX_WAIT_FOR_WEB_SECONDS)
        handoff.wait_until_taken(spec.job_id, wait)
        outcome = handoff.claim_send(spec.job_id)
    if outcome != SENDING:
        log.info("job %s rule=%s: %s", spec.job_id, spec.rule,
                 "answered passively" if outcome == PASSIVE else outcome)
        return outcome
    result = context.sender.send(handoff.custom_body(spec.job_id).encode("utf-8"))
    if result.sent:
        handoff.mark(spec.job_id, SENT)
        log.info("job %s rule=%s: sent to %s with custom/send", spec.job_id, spec.rule, who)
        return "sent"
    handoff.mark(spec.job_id, FAILED, f"{result.errcode}: {result.detail}")
    log.error("job %s rule=%s: custom/send to %s failed, not retrying: errcode %s, %s",
              spec.job_id, spec.rule, who, result.errcode, result.detail)
    return "failed"
