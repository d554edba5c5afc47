"""The /weixin endpoint that WeChat calls: GET proves we own the URL, POST answers messages and events.

POST reads top to bottom: verify -> decrypt -> parse -> route -> dedupe + render -> encrypt.
Failures map to 403 (signature, timestamp, replay), 413 (body too large), 400 (malformed input);
anything that goes wrong while finding or rendering a reply is logged and answered with `success`,
so WeChat never sees a 500 or a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import web

import utils
from slow_replies.answer import answer_or_defer, answer_through_retries
from weixin import messages, render
from weixin.app import App
from weixin.config import Settings
from weixin.crypto import AppIdMismatch, DecryptError, decrypt_message, encrypted_reply
from weixin.dedupe import Outcome, RequestFingerprint
from weixin.messages import MalformedMessage, Message, describe, reply_type, retry_key
from weixin.request_record import RequestRecord
from weixin.rules import Match

log = logging.getLogger("weixin")

XML_CONTENT_TYPE = "application/xml; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
NO_REPLY = "success"
STATUS_PAGE = "WeChat endpoint is up. Point the console's URL here; WeChat signs every request.\n"
MAX_DRAIN_BYTES = 16 * 1024 * 1024
# Every /weixin answer: a browser must never guess a type (an echoed echostr or a reason rendered as HTML).
NOSNIFF = ("X-Content-Type-Options", "nosniff")
MAX_ECHOSTR_LENGTH = 128  # WeChat's echostr is a decimal number of about 19 digits


@dataclass(frozen=True)
class Response:
    status: str
    body: str
    content_type: str = TEXT_CONTENT_TYPE


class Rejected(Exception):
    """A request we refuse; `reason` is a short plain-text body, safe to show to anyone."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def forbidden(reason: str) -> Rejected:
    return Rejected("403 Forbidden", reason)


def bad_request(reason: str) -> Rejected:
    return Rejected("400 Bad Request", reason)


class NoKeyForSafeMode(Exception):
    """WeChat sent a safe-mode message but no EncodingAESKey is configured: an operator error."""


# --- the steps -------------------------------------------------------------------------------


def read_query(environ: dict[str, Any]) -> dict[str, str]:
    query = environ.get("QUERY_STRING", "")
    if "%" in query or "+" in query:  # WeChat's values are plain ASCII: the general parser only when needed
        return dict(parse_qsl(query, keep_blank_values=True))
    return dict(pair.partition("=")[::2] for pair in query.split("&") if pair)


def verify_query(query: dict[str, str], settings: Settings) -> None:
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if not timestamp or not nonce or not query.get("signature"):
        raise forbidden("missing signature, timestamp or nonce")
    if not utils.check_signature(settings.token, timestamp, nonce, query["signature"]):
        raise forbidden("invalid signature")
    if not utils.timestamp_is_fresh(timestamp, settings.timestamp_window):
        raise forbidden("timestamp outside the allowed window")


def declared_length(environ: dict[str, Any]) -> int:
    """Content-Length as a number (0 when absent). Only ASCII digits: int() would also take a sign, blanks,
    underscores and non-ASCII digits, and a negative length would make stream.read() read to the end."""
    raw = environ.get("CONTENT_LENGTH") or "0"
    if not (raw.isascii() and raw.isdigit()):
        raise bad_request("invalid Content-Length")
    try:
        return int(raw)
    except ValueError:  # more digits than int() converts (4,300)
        raise bad_request("invalid Content-Length") from None


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    declared = declared_length(environ)
    if declared > limit:
        raise Rejected("413 Request Entity Too Large", "body too large")
    stream = environ.get("wsgi.input")
    body = stream.read(declared if declared else limit + 1) if stream else b""
    environ["weixin.body_read"] = True
    if len(body) > limit:
        raise Rejected("413 Request Entity Too Large", "body too large")
    if not body:
        raise bad_request("empty body")
    return body


def drain_body(environ: dict[str, Any]) -> None:
    """Read and drop what is left of a refused request's body (up to 16 MiB): a server that closes a
    connection with unread data makes the kernel send a reset, and the client may never see our answer."""
    if environ.get("weixin.body_read"):
        return
    environ["weixin.body_read"] = True
    stream = environ.get("wsgi.input")
    try:
        remaining = min(declared_length(environ), MAX_DRAIN_BYTES)
    except Rejected:  # a length we cannot trust: read nothing (a negative one would read to the end)
        return
    try:
        while stream is not None and remaining > 0:
            chunk = stream.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
    except (OSError, ValueError):
        pass


def parse_xml(body: bytes) -> dict[str, Any]:
    """The fields of `<xml>...</xml>`; DTDs, entities, invalid UTF-8, other roots, duplicated fields and
    nesting deeper than any WeChat push are refused; so is anything but UTF-8 starting with `<xml>` (used for
    the body and for the decrypted XML of safe mode)."""
    problem = utils.xml_policy_problem(body)
    if problem is not None:
        raise bad_request(problem)
    if utils.has_forbidden_markup(body):
        raise bad_request("DOCTYPE and entity declarations are not accepted")
    try:
        fields = utils.xml_fields(body)
    except utils.MalformedXml as error:
        raise bad_request(str(error)) from None
    if any(isinstance(value, list) for value in fields.values()):
        raise bad_request("duplicated field")
    return fields


def open_envelope(fields: dict[str, Any], query: dict[str, str], app: App) -> tuple[str, dict[str, Any]]:
    """The transport mode and the message fields: decrypted in safe/compatible mode."""
    settings = app.settings
    if query.get("encrypt_type", "raw").lower() != "aes":
        if settings.require_encryption:
            raise forbidden("this server accepts encrypted messages only")
        if app.aes_key is not None and app.plaintext_warning.allow():
            log.warning(
                "plaintext push received although WECHAT_ENCODING_AES_KEY is set; once the console is in safe "
                "mode, set WECHAT_REQUIRE_ENCRYPTION=1 to refuse plaintext pushes (logged at most once a minute)"
            )
        return "plain", fields
    encrypt = fields.get("Encrypt")
    mode = "compatible" if "MsgType" in fields else "safe"
    if not isinstance(encrypt, str) or not encrypt:
        raise bad_request("encrypt_type=aes but no Encrypt field")
    if app.aes_key is None:
        if mode == "compatible":
            return "compatible-unencrypted", fields  # no key configured: the plaintext copy is all we can read
        raise NoKeyForSafeMode()
    if not utils.check_msg_signature(
        settings.token, query["timestamp"], query["nonce"], encrypt, query.get("msg_signature")
    ):
        raise forbidden("invalid msg_signature")
    try:
        inner = decrypt_message(encrypt, app.aes_key, settings.appid)
    except AppIdMismatch:
        raise forbidden("message is for another AppID") from None
    except DecryptError:
        raise bad_request("Encrypt cannot be decrypted") from None
    return mode, parse_xml(inner)


def parse_message(fields: dict[str, Any]) -> Message:
    """The message in the fields (weixin/messages.py); 400 when a required field is missing."""
    try:
        return messages.parse(fields)
    except MalformedMessage as error:
        raise bad_request(str(error)) from None


def route(message: Message, app: App, record: RequestRecord) -> Match | None:
    """The rule for this message (None when finding it failed: logged, answered with `success`)."""
    try:
        match = app.rules.current().find_reply(message)
    except Exception:
        log.exception("finding the reply failed; answering success")
        record.reply = "error"
        return None
    record.rule = match.rule
    return match


def render_reply(match: Match | None, message: Message, app: App, record: RequestRecord) -> str | None:
    """The reply XML, or None for "nothing to say". Errors here (a handler's, say) become `success`."""
    if match is None:
        return None
    try:
        xml = render.render_reply(match.reply, message, app.handler_context)
    except Exception:
        log.exception("reply failed (rule=%s); answering success", record.rule)
        record.reply = "error"
        return None
    record.reply = reply_type(xml)
    return xml


def answer_once(message: Message, match: Match | None, fingerprint: RequestFingerprint | None, timestamp: str,
                app: App, record: RequestRecord) -> str | None:
    """Dedupe and render: the reply for this message, the same one for every retry of it.

    A reply from the rules file has no side effects, so it is rendered first and stored by the claim
    itself (one Redis round trip); a handler runs code, so the message is claimed before it runs and
    the reply stored after (it runs once however many retries arrive)."""
    key = retry_key(app.settings.appid, message)
    # The keyword of a slow reply kept for this follower, or of a long text's next page (slow_replies/hold.py).
    kept = app.background.kept_page(message, key)
    runs_code = kept is None and match is not None and match.reply is not None and match.reply.kind == "handler"
    # Hold mode: every delivery of a slow reply waits for it, the first and WeChat's retries alike.
    holding = runs_code and match.reply.background and app.background.holds()
    # Too fresh to be a retry: claimed in this server's memory, written to Redis behind (weixin/write_behind.py).
    fresh = app.settings.dedupe_write_behind and app.delivery_ages.is_fresh(message.text("CreateTime"), timestamp)
    if runs_code:
        claim = app.retry_cache.claim_fresh(key, fingerprint) if fresh else app.retry_cache.claim(key, fingerprint)
    else:
        xml = kept if kept is not None else render_reply(match, message, app, record)
        if fresh:
            claim = app.retry_cache.claim_fresh_with_reply(key, xml, fingerprint)
        else:
            claim = app.retry_cache.claim_with_reply(key, xml, fingerprint)
    record.dedupe = claim.label
    if claim.outcome is Outcome.REPLAYED:
        raise forbidden("signature already used for another message")
    if claim.outcome is Outcome.DONE:
        record.reply = reply_type(claim.reply)
        return claim.reply
    if claim.outcome is Outcome.IN_PROGRESS and not holding:
        record.reply = "none"
        return None
    if not runs_code:
        if kept is not None:
            record.reply = "kept-page"
        return xml
    if holding:  # the job runs once (its hand-off record); only an answer is stored: `success` ends the retries
        xml = answer_through_retries(match.reply, message, key, app.background, record)
        if xml is not None:
            app.retry_cache.store(claim.key, xml, local=claim.local, behind=claim.behind)
        return xml
    if match.reply.background:  # runs in the worker: its reply if ready by the deadline, else `success` now
        deadline = record.started + app.settings.reply_deadline
        xml = answer_or_defer(match.reply, message, key, app.background, deadline, record)
    else:
        xml = render_reply(match, message, app, record)
    if claim.outcome is Outcome.FIRST:
        app.retry_cache.store(claim.key, xml, local=claim.local, behind=claim.behind)
    return xml


def reply_response(xml: str | None, mode: str, query: dict[str, str], app: App) -> Response:
    if xml is None:
        return Response("200 OK", NO_REPLY)
    if mode in ("safe", "compatible") and app.aes_key is not None:
        settings = app.settings
        xml = encrypted_reply(xml, app.aes_key, settings.appid, settings.token, query["timestamp"], query["nonce"])
    return Response("200 OK", xml, XML_CONTENT_TYPE)


def rejection(error: Rejected, record: RequestRecord) -> Response:
    record.status = int(error.status.split()[0])
    record.reply = error.reason.replace(" ", "_")
    return Response(error.status, error.reason)


# --- the two requests --------------------------------------------------------------------------


def respond_to_message(environ: dict[str, Any], app: App) -> Response:
    """POST /weixin, as a Response; never raises."""
    record = RequestRecord()
    try:
        query = read_query(environ)
        verify_query(query, app.settings)
        body = read_body(environ, app.settings.max_body_bytes)
        mode, fields = open_envelope(parse_xml(body), query, app)
        record.mode = mode
        message = parse_message(fields)
        record.kind = ":".join(describe(message))
        match = route(message, app, record)
        # Replay check in every mode: the signature covers only the triple, and a safe-mode push's triple
        # (without encrypt_type and msg_signature) verifies as well as a plaintext one's; the claim binds it
        # to this body, so WeChat's retries (the same bytes) pass and any other body is refused.
        fingerprint = RequestFingerprint.of(
            app.settings.appid, query["signature"], query["timestamp"], query["nonce"], body,
            app.settings.timestamp_window,
        )
        xml = answer_once(message, match, fingerprint, query["timestamp"], app, record)
        return reply_response(xml, mode, query, app)
    except Rejected as error:
        drain_body(environ)
        return rejection(error, record)
    except NoKeyForSafeMode:
        log.error("safe-mode message received but WECHAT_ENCODING_AES_KEY is not set; answering success")
        record.reply = "no-key"
        return Response("200 OK", NO_REPLY)
    except Exception:
        log.exception("POST /weixin failed; answering success")
        record.reply = "error"
        return Response("200 OK", NO_REPLY)
    finally:
        record.write("POST")


def respond_to_verification(environ: dict[str, Any], app: App) -> Response:
    """GET /weixin: echo `echostr` when the signature is right (the console's URL check)."""
    record = RequestRecord(kind="verify")
    try:
        query = read_query(environ)
        if not query:
            record.reply = "status-page"
            return Response("200 OK", STATUS_PAGE)
        verify_query(query, app.settings)
        if "echostr" not in query:
            raise forbidden("missing echostr")
        echostr = query["echostr"]
        # The signature does not cover echostr: echo only what WeChat sends, never markup an attacker chose.
        if not (0 < len(echostr) <= MAX_ECHOSTR_LENGTH and echostr.isascii() and echostr.isalnum()):
            raise bad_request("echostr must be ASCII letters and digits")
        record.reply = "echostr"
        return Response("200 OK", echostr)
    except Rejected as error:
        return rejection(error, record)
    except Exception:
        log.exception("GET /weixin failed")
        return rejection(forbidden("verification failed"), record)
    finally:
        record.write("GET")


# --- web.py ------------------------------------------------------------------------------------


def _through_web_py(response: Response) -> str:
    web.ctx.status = response.status
    web.header("Content-Type", response.content_type)
    web.header(*NOSNIFF)
    return response.body


class Handle:
    """The web.py view for /weixin (index.py's URL map); the App comes from `web.ctx.app` (index.py)."""

    def GET(self) -> str:
        return _through_web_py(respond_to_verification(web.ctx.env, web.ctx.app))

    def POST(self) -> str:
        return _through_web_py(respond_to_message(web.ctx.env, web.ctx.app))


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def direct_message_route(web_py_app: WsgiApp, app: App) -> WsgiApp:
    """web.py middleware: POST /weixin goes straight to `respond_to_message`, the same code Handle.POST
    runs, skipping web.py's per-request setup (web.ctx, processors), which every message would pay for
    nothing; every other request goes through web.py, and any other /weixin answer of web.py's own (405
    for PUT) gets nosniff."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/weixin":
            return web_py_app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST":
            response = respond_to_message(environ, app)
            body = response.body.encode("utf-8")
            start_response(
                response.status,
                [("Content-Type", response.content_type), ("Content-Length", str(len(body))), NOSNIFF],
            )
            return [body]

        def start_with_nosniff(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if not any(name.lower() == "x-content-type-options" for name, _ in headers):
                headers = [*headers, NOSNIFF]
            return start_response(status, headers, *exc_info)

        return web_py_app(environ, start_with_nosniff)

    return application
