"""The /weixin endpoint that WeChat calls: GET proves we own the URL, POST answers messages and events.

POST reads top to bottom: verify -> decrypt -> parse -> dedupe -> route -> render -> encrypt.
Failures map to 403 (signature, timestamp), 413 (body too large), 400 (malformed input); anything
that goes wrong while finding or rendering a reply is logged and answered with `success`, so WeChat
never sees a 500 or a traceback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import web
import wechatpy

import render
import utils
from config import Settings
from dedupe import Outcome, RequestFingerprint, RetryCache, fail_fast_client, message_key
from replies import ReplyBook, describe
from wechat_crypto import AppIdMismatch, DecryptError, aes_key_from_encoding_key, decrypt_message, encrypted_reply

log = logging.getLogger("weixin")

XML_CONTENT_TYPE = "application/xml; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
NO_REPLY = "success"


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


@dataclass
class Runtime:
    """What the endpoint needs, built once per process by `configure`."""

    settings: Settings
    replies: ReplyBook
    retry_cache: RetryCache
    aes_key: bytes | None


runtime: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    """Build the runtime from settings (loads the replies file: an invalid one stops start-up)."""
    global runtime
    runtime = Runtime(
        settings=settings,
        replies=ReplyBook(settings.replies_file),
        retry_cache=RetryCache(fail_fast_client(settings.redis_url)),
        aes_key=aes_key_from_encoding_key(settings.encoding_aes_key) if settings.encoding_aes_key else None,
    )
    return runtime


@dataclass
class RequestRecord:
    """What the one log line per request says."""

    mode: str = "-"
    kind: str = "-"
    rule: str = "-"
    dedupe: str = "-"
    reply: str = "-"
    status: int = 200
    started: float = field(default_factory=time.perf_counter)

    def write(self, method: str) -> None:
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        log.info(
            "%s mode=%s type=%s rule=%s dedupe=%s reply=%s status=%d ms=%.1f",
            method, self.mode, self.kind, self.rule, self.dedupe, self.reply, self.status, elapsed_ms,
        )


# --- the steps -------------------------------------------------------------------------------


def read_query() -> dict[str, str]:
    return dict(parse_qsl(web.ctx.env.get("QUERY_STRING", ""), keep_blank_values=True))


def verify_query(query: dict[str, str], settings: Settings) -> None:
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if not timestamp or not nonce or not query.get("signature"):
        raise forbidden("missing signature, timestamp or nonce")
    if not utils.check_signature(settings.token, timestamp, nonce, query["signature"]):
        raise forbidden("invalid signature")
    if not utils.timestamp_is_fresh(timestamp, settings.timestamp_window):
        raise forbidden("timestamp outside the allowed window")


MAX_DRAIN_BYTES = 16 * 1024 * 1024


def drain_body() -> None:
    """Read and drop what is left of a refused request's body (up to 16 MiB): a server that closes a
    connection with unread data makes the kernel send a reset, and the client may never see our answer."""
    env = web.ctx.env
    if env.get("weixin.body_read"):
        return
    env["weixin.body_read"] = True
    stream = env.get("wsgi.input")
    try:
        remaining = min(int(env.get("CONTENT_LENGTH") or 0), MAX_DRAIN_BYTES)
        while stream is not None and remaining > 0:
            chunk = stream.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
    except (OSError, ValueError):
        pass


def read_body(limit: int) -> bytes:
    env = web.ctx.env
    try:
        declared = int(env.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise bad_request("invalid Content-Length") from None
    if declared > limit:
        raise Rejected("413 Request Entity Too Large", "body too large")
    stream = env.get("wsgi.input")
    body = stream.read(declared if declared else limit + 1) if stream else b""
    env["weixin.body_read"] = True
    if len(body) > limit:
        raise Rejected("413 Request Entity Too Large", "body too large")
    if not body:
        raise bad_request("empty body")
    return body


def parse_xml(body: bytes) -> dict[str, Any]:
    """The fields of `<xml>...</xml>`; DTDs, entities, invalid UTF-8, other roots, duplicated fields and
    nesting deeper than any WeChat push are refused."""
    if utils.has_forbidden_markup(body):
        raise bad_request("DOCTYPE and entity declarations are not accepted")
    try:
        fields = utils.xml_fields(body)
    except utils.MalformedXml as error:
        raise bad_request(str(error)) from None
    if any(isinstance(value, list) for value in fields.values()):
        raise bad_request("duplicated field")
    return fields


def open_envelope(fields: dict[str, Any], query: dict[str, str], current: Runtime) -> tuple[str, dict[str, Any]]:
    """The transport mode and the message fields: decrypted in safe/compatible mode."""
    settings = current.settings
    if query.get("encrypt_type", "raw").lower() != "aes":
        if settings.require_encryption:
            raise forbidden("this server accepts encrypted messages only")
        return "plain", fields
    encrypt = fields.get("Encrypt")
    mode = "compatible" if "MsgType" in fields else "safe"
    if not isinstance(encrypt, str) or not encrypt:
        raise bad_request("encrypt_type=aes but no Encrypt field")
    if current.aes_key is None:
        if mode == "compatible":
            return "compatible-unencrypted", fields  # no key configured: the plaintext copy is all we can read
        raise NoKeyForSafeMode()
    if not utils.check_msg_signature(
        settings.token, query["timestamp"], query["nonce"], encrypt, query.get("msg_signature")
    ):
        raise forbidden("invalid msg_signature")
    try:
        inner = decrypt_message(encrypt, current.aes_key, settings.appid)
    except AppIdMismatch:
        raise forbidden("message is for another AppID") from None
    except DecryptError:
        raise bad_request("Encrypt cannot be decrypted") from None
    return mode, parse_xml(inner)


class NoKeyForSafeMode(Exception):
    """WeChat sent a safe-mode message but no EncodingAESKey is configured: an operator error."""


def parse_message(fields: dict[str, Any]) -> Any:
    """A wechatpy message or event object (UnknownMessage for types wechatpy does not know)."""
    for name in ("ToUserName", "FromUserName", "MsgType"):
        if not isinstance(fields.get(name), str) or not fields[name]:
            raise bad_request(f"missing {name}")
    message_type = fields["MsgType"].lower()
    if message_type == "event":
        event = fields.get("Event")
        event_type = event.lower() if isinstance(event, str) else ""
        if event_type == "subscribe" and isinstance(fields.get("EventKey"), str):
            key = fields["EventKey"]
            if key.startswith(("scanbarcode|", "scanimage|")):
                event_type = "subscribe_scan_product"
            elif key.startswith("qrscene_"):
                event_type = "subscribe_scan"
                fields = {**fields, "Event": event_type, "EventKey": key[len("qrscene_"):]}
        message_class = wechatpy.events.EVENT_TYPES.get(event_type, wechatpy.messages.UnknownMessage)
    else:
        message_class = wechatpy.messages.MESSAGE_TYPES.get(message_type, wechatpy.messages.UnknownMessage)
    return message_class(fields)


def answer(message: Any, current: Runtime, record: RequestRecord) -> str | None:
    """Route and render: the reply XML, or None for "nothing to say". Errors here become `success`."""
    try:
        match = current.replies.current().find_reply(message)
        record.rule = match.rule
        xml = render.render_reply(match.reply, message)
    except Exception:
        log.exception("reply failed (rule=%s); answering success", record.rule)
        record.reply = "error"
        return None
    record.reply = _reply_type(xml)
    return xml


def _reply_type(xml: str | None) -> str:
    if xml is None:
        return "none"
    start = xml.find("<MsgType><![CDATA[")
    return xml[start + 18 : xml.find("]]>", start)] if start >= 0 else "?"


def respond(xml: str | None, mode: str, query: dict[str, str], current: Runtime) -> str:
    if xml is None:
        web.header("Content-Type", TEXT_CONTENT_TYPE)
        return NO_REPLY
    web.header("Content-Type", XML_CONTENT_TYPE)
    if mode in ("safe", "compatible") and current.aes_key is not None:
        settings = current.settings
        return encrypted_reply(xml, current.aes_key, settings.appid, settings.token, query["timestamp"], query["nonce"])
    return xml


def reject(error: Rejected, record: RequestRecord) -> str:
    web.ctx.status = error.status
    web.header("Content-Type", TEXT_CONTENT_TYPE)
    record.status = int(error.status.split()[0])
    record.reply = error.reason.replace(" ", "_")
    return error.reason


# --- the endpoint ----------------------------------------------------------------------------


class Handle:
    def GET(self) -> str:
        record = RequestRecord(kind="verify")
        try:
            assert runtime is not None, "handle.configure() was not called"
            query = read_query()
            if not query:
                web.header("Content-Type", TEXT_CONTENT_TYPE)
                record.reply = "status-page"
                return "WeChat endpoint is up. Point the console's URL here; WeChat signs every request.\n"
            verify_query(query, runtime.settings)
            if "echostr" not in query:
                raise forbidden("missing echostr")
            web.header("Content-Type", TEXT_CONTENT_TYPE)
            record.reply = "echostr"
            return query["echostr"]
        except Rejected as error:
            return reject(error, record)
        except Exception:
            log.exception("GET /weixin failed")
            return reject(forbidden("verification failed"), record)
        finally:
            record.write("GET")

    def POST(self) -> str:
        record = RequestRecord()
        try:
            assert runtime is not None, "handle.configure() was not called"
            current = runtime
            query = read_query()
            verify_query(query, current.settings)
            body = read_body(current.settings.max_body_bytes)
            mode, fields = open_envelope(parse_xml(body), query, current)
            record.mode = mode
            message = parse_message(fields)
            record.kind = ":".join(describe(message))

            fingerprint = RequestFingerprint.of(
                current.settings.appid, query["signature"], query["timestamp"], query["nonce"], body,
                current.settings.timestamp_window,
            )
            claim = current.retry_cache.claim(message_key(current.settings.appid, message), fingerprint)
            record.dedupe = claim.outcome.value
            if claim.outcome is Outcome.REPLAYED:
                raise forbidden("signature already used for another message")
            if claim.outcome is Outcome.DONE:
                xml = claim.reply
                record.reply = _reply_type(xml)
            elif claim.outcome is Outcome.IN_PROGRESS:
                xml = None
            else:
                xml = answer(message, current, record)
                if claim.outcome is Outcome.FIRST:
                    current.retry_cache.store(claim.key, xml)
            return respond(xml, mode, query, current)
        except Rejected as error:
            drain_body()
            return reject(error, record)
        except NoKeyForSafeMode:
            log.error("safe-mode message received but WECHAT_ENCODING_AES_KEY is not set; answering success")
            record.reply = "no-key"
            web.header("Content-Type", TEXT_CONTENT_TYPE)
            return NO_REPLY
        except Exception:
            log.exception("POST /weixin failed; answering success")
            record.reply = "error"
            web.header("Content-Type", TEXT_CONTENT_TYPE)
            return NO_REPLY
        finally:
            record.write("POST")
