"""The job the worker runs for one message: run the handler, hand the result to the waiting web process or,
past its deadline, send it as a customer-service message. Safe to run again after a crash (see handoff)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from slow_replies.allowlist import HandlerAllowlist
from slow_replies.custom_message import NotSendable, custom_message, encode
from slow_replies.delivery import API_UNAUTHORIZED, CustomMessageSender
from slow_replies.handoff import FAILED, FINISHED, KEPT, PASSIVE, READY, SENDING, SENT, HandOff, job_key
from slow_replies.hold import AUTO, HOLD, HOLD_WINDOW_SECONDS, MORE_HINT, KeptPages, account_mode, switch_to_hold
from slow_replies.jobs import JobSpec
from weixin import messages, redis_clients, render
from weixin.config import Settings, load_settings
from weixin.long_text import TEXT_LIMIT_BYTES, pages_with_hint, split_text
from weixin.render import HandlerContext
from weixin.rules import Reply, Template, resolve_handler
from weixin.sessions import SessionStore

log = logging.getLogger("slow_replies")

# After the web process's deadline, how long it may still be finishing its own compare-and-set; either
# way only one side wins, this only spares a send when the passive reply was a few ms from going out.
DEADLINE_GRACE_SECONDS = 0.25
# No web process waits longer than REPLY_DEADLINE (at most 3.9 s), nor in hold mode past the last of WeChat's
# deliveries: a deadline further away is a clock problem.
MAX_WAIT_FOR_WEB_SECONDS = HOLD_WINDOW_SECONDS + 5.0


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
    kept: KeptPages

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
            kept=KeptPages(client, settings.appid, settings.held_result_ttl),
        )


def masked_openid(openid: str) -> str:
    return f"{openid[:4]}…{openid[-4:]}" if len(openid) > 10 else "…"


@dataclass(frozen=True)
class Result:
    """A handler's answer in the forms the job may deliver it in: the passive reply XML (a long text's first
    page, with how to get the next), its next pages (XML, kept for the keyword), the custom/send bodies (JSON
    text: a long text's pages in order, or one message)."""

    xml: str | None = None
    more: tuple[str, ...] = ()
    custom: str | None = None


def _text_of(reply: Reply) -> str | None:
    if reply.kind != "text":
        return None
    return reply.value.render({}) if isinstance(reply.value, Template) else str(reply.value or "")


def compute(spec: JobSpec, context: WorkerContext) -> Result:
    """The handler's answer (see Result); empty when it has nothing to say or fails (logged: the follower
    then gets nothing, as with a failing passive handler)."""
    if not context.allowlist.allows(spec.handler):
        # Never imported: the name came from Redis, where anyone with access could have written it.
        log.error("refused handler %r of job %s: no background rule of %s names it; not running it",
                  spec.handler, spec.job_id, context.settings.replies_file)
        return Result()
    openid = str(spec.fields.get("FromUserName") or "")
    try:
        # The web process's parser, so that the handler sees the message it would have seen.
        message = messages.parse(spec.fields)
        value = render.call_handler(resolve_handler(spec.handler), message.wechat, context.handler_context)
        reply = render.reply_from_value(value, message)
        text = _text_of(reply) if reply is not None else None
        if text is not None and len(text.encode("utf-8")) > TEXT_LIMIT_BYTES:
            hint = MORE_HINT.format(keyword=context.settings.more_keyword)
            pages = [render.reply_from_value(page, message) for page in pages_with_hint(text, hint)]
            xmls = [render.render_reply(page, message, context.handler_context) for page in pages]
            bodies = [custom_message(openid, render.reply_from_value(page, message)) for page in split_text(text)]
            return Result(xmls[0], tuple(xml for xml in xmls[1:] if xml), json.dumps(bodies, ensure_ascii=False))
        xml = render.render_reply(reply, message, context.handler_context)
    except Exception:
        log.exception("background handler %s failed (rule=%s); nothing will be sent", spec.handler, spec.rule)
        return Result()
    try:
        body = custom_message(openid, reply)
    except NotSendable as error:
        log.warning("job %s: %s; it can be a passive reply only", spec.job_id, error)
        body = None
    return Result(xml, (), encode(body).decode("utf-8") if body else None)


def custom_bodies(stored: str) -> list[bytes]:
    """The custom/send bodies of a job: a JSON list (a long text's pages) or one body."""
    if stored.startswith("["):
        return [encode(body) for body in json.loads(stored)]
    return [stored.encode("utf-8")]


def send_typing_once(spec: JobSpec, context: WorkerContext) -> None:
    """Show "typing..." when a job starts, on an account that uses custom/send: at most once per job (a re-run
    after a crash finds the mark). A 48001 tells auto mode that the account cannot use custom/send."""
    settings = context.settings
    if account_mode(settings.slow_reply_delivery, context.handoff.client, settings.appid) == HOLD:
        return
    if context.handoff.delivery(spec.job_id) == HOLD:
        return
    if not context.handoff.client.hsetnx(job_key(spec.job_id), "typing", "1"):
        return
    result = context.sender.typing(str(spec.fields.get("FromUserName") or ""))
    if result.errcode == API_UNAUTHORIZED and settings.slow_reply_delivery == AUTO:
        switch_to_hold(context.handoff.client, settings.appid, "custom/typing")
    elif not result.sent:
        log.info("job %s: custom/typing not shown (%s, %s)", spec.job_id, result.errcode, result.detail)


def keep_result(spec: JobSpec, context: WorkerContext, why: str) -> str:
    """Keep the job's result for the follower's keyword (HELD_RESULT_TTL); the job ends `kept`."""
    pages = context.handoff.result_pages(spec.job_id)
    context.kept.keep(str(spec.fields.get("FromUserName") or ""), pages)
    context.handoff.mark(spec.job_id, KEPT, why)
    log.info("job %s rule=%s: result kept for the keyword %s (%d page(s), %s)", spec.job_id, spec.rule,
             context.settings.held_result_keyword, len(pages), why)
    return KEPT


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
        send_typing_once(spec, context)
        result = compute(spec, context)
        outcome = handoff.finish(spec.job_id, result.xml, result.custom, result.more)
    if outcome == READY:
        wait = min(spec.deadline + DEADLINE_GRACE_SECONDS - time.time(), MAX_WAIT_FOR_WEB_SECONDS)
        handoff.wait_until_taken(spec.job_id, wait)
        outcome = handoff.claim_send(spec.job_id)
    if outcome == KEPT:
        return keep_result(spec, context, "hold mode: not ready by WeChat's last delivery")
    if outcome != SENDING:
        log.info("job %s rule=%s: %s", spec.job_id, spec.rule,
                 "answered passively" if outcome == PASSIVE else outcome)
        return outcome
    settings = context.settings
    if account_mode(settings.slow_reply_delivery, handoff.client, settings.appid) == HOLD:
        return keep_result(spec, context, "auto mode: this account cannot use custom/send")
    for number, body in enumerate(custom_bodies(handoff.custom_body(spec.job_id)), start=1):
        sent = context.sender.send(body)
        if sent.sent:
            continue
        if sent.errcode == API_UNAUTHORIZED and settings.slow_reply_delivery == AUTO:
            switch_to_hold(handoff.client, settings.appid, "custom/send")
            return keep_result(spec, context, "auto mode: custom/send answered 48001")
        handoff.mark(spec.job_id, FAILED, f"{sent.errcode}: {sent.detail}")
        log.error("job %s rule=%s: custom/send to %s failed (message %d), not retrying: errcode %s, %s",
                  spec.job_id, spec.rule, who, number, sent.errcode, sent.detail)
        return "failed"
    handoff.mark(spec.job_id, SENT)
    log.info("job %s rule=%s: sent to %s with custom/send", spec.job_id, spec.rule, who)
    return "sent"
