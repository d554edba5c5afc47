"""Judge a server's answer the way WeChat does, one precise line per problem, and show what a follower sees.

Pure functions over a `Delivery` (what came back) and the `Push` (what was sent); no I/O.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from xml.parsers import expat

from sandbox import platform_crypto
from sandbox.delivery import Delivery
from sandbox.messages import Account, Message, Push

UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"
REPLY_TYPES = ("text", "image", "voice", "video", "music", "news", "transfer_customer_service")
REQUIRED_FIELDS = {  # protocol.md §3.1; news items are checked separately
    "text": ("Content",),
    "image": ("Image/MediaId",),
    "voice": ("Voice/MediaId",),
    "video": ("Video/MediaId",),
    "music": ("Music/ThumbMediaId",),
    "news": ("ArticleCount", "Articles"),
    "transfer_customer_service": (),
}
ARTICLE_FIELDS = ("Title", "Description", "PicUrl", "Url")
TEXT_LIMIT_BYTES = 2048
XML_CONTENT_TYPES = ("text/xml", "application/xml")


@dataclass(frozen=True)
class Problem:
    """One thing WeChat would object to; `code` is stable for tests, `message` is for people."""

    code: str
    message: str
    severity: str = "error"  # "warning": worth fixing, but WeChat still delivers the reply

    def __str__(self) -> str:
        return self.message if self.severity == "error" else f"warning: {self.message}"


class XmlError(ValueError):
    """A body that is not well-formed XML, or that declares a DOCTYPE or entities."""


def parse_xml(data: bytes | str) -> ElementTree.Element:
    """Parse with expat, refusing DOCTYPE and entity declarations (no XXE, no entity expansion)."""
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse_doctype(*_: object) -> None:
        raise XmlError("the body declares a DOCTYPE; WeChat's parsers refuse DTDs")

    def refuse_entity(*_: object) -> None:
        raise XmlError("the body declares an entity; WeChat's parsers refuse entity declarations")

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise XmlError(
            f"{expat.errors.messages[error.code]} at line {error.lineno}, column {error.offset + 1}"
        ) from None
    return builder.close()


def _text(element: ElementTree.Element, path: str) -> str | None:
    found = element.find(path)
    return None if found is None else (found.text or "")


@dataclass(frozen=True)
class Reply:
    """The reply as WeChat reads it after decryption; `root` is None when the server sent no reply."""

    root: ElementTree.Element | None
    max_articles: int = 8

    @property
    def msg_type(self) -> str:
        return "none" if self.root is None else (_text(self.root, "MsgType") or "").strip()

    def field(self, path: str) -> str:
        return "" if self.root is None else (_text(self.root, path) or "")

    @property
    def articles(self) -> list[dict[str, str]]:
        if self.root is None:
            return []
        return [
            {name: (_text(item, name) or "") for name in ARTICLE_FIELDS} for item in self.root.findall("Articles/item")
        ]


@dataclass
class Verdict:
    """Everything found about one answer: the problems and the reply (None when there is nothing to read)."""

    problems: list[Problem] = field(default_factory=list)
    reply: Reply | None = None
    follower_sees_error: bool = False

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, code: str, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(code, message, severity))


def _last_line(body: bytes) -> str:
    lines = [line.strip() for line in body.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _deliveries(count: int) -> str:
    return "1 delivery" if count == 1 else f"{count} deliveries"


def _describe_no_answer(delivery: Delivery, timed_out: bool) -> str:
    failures = "; ".join(f"#{a.number}: {a.failure}" for a in delivery.attempts)
    count = _deliveries(len(delivery.attempts))
    gave_up = f"after {delivery.timeout:g} s" if timed_out else f"after {count}"
    return (
        f"WeChat gave up {gave_up}; the follower sees {UNAVAILABLE} "
        f"(no usable answer to {count} of the same request — {failures})"
    )


def _check_transport(delivery: Delivery, verdict: Verdict, hold: bool = False) -> bool:
    """Status, retries, time; False when there is no body worth reading."""
    final = delivery.final
    if not delivery.answered:
        verdict.follower_sees_error = True
        if final.status is not None and final.status >= 500:
            verdict.add(
                "http_status",
                f"HTTP {final.status} {final.reason}: WeChat counts it as no answer and retries",
            )
            if b"Traceback (most recent call last)" in final.body:
                verdict.add(
                    "traceback",
                    f"the 500 body is a Python traceback ({_last_line(final.body)}): it leaks code details",
                )
        timed_out = any(attempt.timed_out for attempt in delivery.attempts)
        verdict.add("timeout" if timed_out else "no_answer", _describe_no_answer(delivery, timed_out))
        return False
    if len(delivery.attempts) > 1:
        missed = "; ".join(f"#{a.number}: {a.failure}" for a in delivery.attempts[:-1])
        verdict.add(
            "retried",
            f"the first {_deliveries(len(delivery.attempts) - 1).removeprefix('1 ')} got no usable answer ({missed}); "
            f"WeChat re-sent the identical request and only delivery #{final.number} was answered",
            # A server in hold mode (SLOW_REPLY_DELIVERY) answers a slow reply on a re-send on purpose: told so,
            # deliveries that timed out before the answer are a warning; a refused or broken one stays an error.
            "warning" if hold and all(attempt.timed_out for attempt in delivery.attempts[:-1]) else "error",
        )
    if final.status != 200:
        hint = {
            403: " — the server refused the push; usually a failed signature check (same Token?)",
            400: " — the server found the push malformed",
            404: " — nothing at this URL; check the path configured in the console",
            405: " — the server does not accept POST here",
        }.get(final.status or 0, "")
        verdict.add(
            "http_status",
            f"HTTP {final.status} {final.reason}: WeChat expects 200; the follower sees {UNAVAILABLE}{hint}",
        )
        verdict.follower_sees_error = True
        return False
    return True


def _check_content_type(delivery: Delivery, verdict: Verdict) -> None:
    content_type = delivery.content_type
    media = content_type.split(";")[0].strip().lower()
    if media in XML_CONTENT_TYPES:
        charset = re.search(r"charset=([\w-]+)", content_type, re.IGNORECASE)
        if charset and charset.group(1).lower().replace("-", "") != "utf8":
            verdict.add("content_type", f"Content-Type {content_type!r} names charset {charset.group(1)}; use UTF-8")
        return
    if not media:
        verdict.add("content_type", "no Content-Type on an XML reply; send text/xml", "warning")
    elif media == "text/plain":
        verdict.add("content_type", "Content-Type is text/plain on an XML reply; send text/xml", "warning")
    else:
        verdict.add("content_type", f"Content-Type is {media} on an XML reply; send text/xml")


def _not_xml(body: bytes) -> str | None:
    start = body.lstrip()[:200].lower()
    if start[:1] in (b"{", b"["):
        try:
            json.loads(body)
        except ValueError:
            return None
        return "JSON"
    if start.startswith(b"<!doctype html") or start.startswith(b"<html"):
        return "an HTML page"
    return None


def _parse_body(body: bytes, verdict: Verdict, what: str = "the reply") -> ElementTree.Element | None:
    kind = _not_xml(body)
    if kind:
        verdict.add(
            "not_xml",
            f"{what} is {kind}, not XML: WeChat calls it abnormal data and the follower sees {UNAVAILABLE}",
        )
        verdict.follower_sees_error = True
        return None
    try:
        root = parse_xml(body)
    except XmlError as error:
        message = f"{what} is not well-formed XML: {error}"
        text = body.decode("utf-8", "replace")
        if text.count("]]>") > text.count("<![CDATA["):
            message += " — a ']]>' inside the text closes its CDATA section early (split it as ']]]]><![CDATA[>')"
        verdict.add("malformed_xml", message)
        verdict.follower_sees_error = True
        return None
    if root.tag != "xml":
        verdict.add("root", f"the root element of {what} is <{root.tag}>, WeChat expects <xml>")
        verdict.follower_sees_error = True
        return None
    return root


def _open_envelope(envelope: ElementTree.Element, account: Account, verdict: Verdict) -> ElementTree.Element | None:
    missing = [tag for tag in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce") if _text(envelope, tag) is None]
    if missing:
        verdict.add("envelope", f"the encrypted envelope lacks {', '.join(missing)}")
        verdict.follower_sees_error = True
        if "Encrypt" in missing:
            return None
    encrypted = (_text(envelope, "Encrypt") or "").strip()
    if "MsgSignature" not in missing and "TimeStamp" not in missing and "Nonce" not in missing:
        timestamp = (_text(envelope, "TimeStamp") or "").strip()
        nonce = (_text(envelope, "Nonce") or "").strip()
        given = (_text(envelope, "MsgSignature") or "").strip()
        expected = platform_crypto.message_signature(account.token, timestamp, nonce, encrypted)
        if given != expected:
            verdict.add(
                "msg_signature",
                f"MsgSignature {given!r} does not verify over the envelope's TimeStamp {timestamp!r}, "
                f"Nonce {nonce!r} and Encrypt (expected {expected!r}); WeChat drops the reply",
            )
            verdict.follower_sees_error = True
    try:
        inner, receiveid = platform_crypto.decrypt(account.encoding_aes_key, encrypted)
    except platform_crypto.CryptoError as error:
        verdict.add("decrypt", f"Encrypt does not decrypt with the account's EncodingAESKey: {error}")
        verdict.follower_sees_error = True
        return None
    if receiveid != account.appid:
        verdict.add(
            "appid",
            f"the AppID inside the encrypted reply is {receiveid!r}, not the account's {account.appid!r}",
        )
        verdict.follower_sees_error = True
    return _parse_body(inner, verdict, "the decrypted reply")


def _check_reply_fields(root: ElementTree.Element, message: Message, verdict: Verdict) -> None:
    to_user, from_user = _text(root, "ToUserName"), _text(root, "FromUserName")
    if to_user is None:
        verdict.add("swap", "ToUserName is missing; it must be the follower's OpenID (the push's FromUserName)")
    elif to_user != message.from_user:
        verdict.add(
            "swap",
            f"ToUserName is {to_user!r} but must be the follower's OpenID {message.from_user!r} "
            "(the push's FromUserName)",
        )
    if from_user is None:
        verdict.add("swap", "FromUserName is missing; it must be the account's id (the push's ToUserName)")
    elif from_user != message.to_user:
        verdict.add(
            "swap",
            f"FromUserName is {from_user!r} but must be the account's id {message.to_user!r} (the push's ToUserName)",
        )
    create_time = _text(root, "CreateTime")
    if create_time is None:
        verdict.add("create_time", "CreateTime is missing")
    elif not create_time.strip().isdigit():
        verdict.add("create_time", f"CreateTime must be an integer (Unix seconds), got {create_time!r}")

    msg_type = _text(root, "MsgType")
    if msg_type is None:
        verdict.add("msg_type", "MsgType is missing")
        return
    msg_type = msg_type.strip()
    if msg_type not in REPLY_TYPES:
        verdict.add("msg_type", f"MsgType {msg_type!r} is not a reply type WeChat knows ({', '.join(REPLY_TYPES)})")
        return
    for path in REQUIRED_FIELDS[msg_type]:
        value = _text(root, path)
        if value is None:
            verdict.add("required_field", f"the {msg_type} reply needs <{path.replace('/', '><')}>; it is missing")
    if msg_type == "text":
        content = _text(root, "Content")
        if content is not None and not content.strip():
            verdict.add(
                "empty_content",
                "the text reply's Content is empty; to send nothing, answer `success` or an empty body",
            )
        elif content is not None and (size := len(content.encode("utf-8"))) > TEXT_LIMIT_BYTES:
            verdict.add(
                "text_length",
                f"Content is {size} bytes; the old documented limit is {TEXT_LIMIT_BYTES}",
                "warning",
            )
    if msg_type == "news":
        _check_news(root, message, verdict)


def _check_news(root: ElementTree.Element, message: Message, verdict: Verdict) -> None:
    items = root.findall("Articles/item")
    declared = _text(root, "ArticleCount")
    if declared is not None:
        if not declared.strip().isdigit():
            verdict.add("article_count", f"ArticleCount must be an integer, got {declared!r}")
        elif int(declared) != len(items):
            verdict.add("article_count", f"ArticleCount says {int(declared)} but Articles holds {len(items)} item(s)")
    if root.find("Articles") is not None and not items:
        verdict.add("article_count", "the news reply has no <item> in Articles")
    limit = message.max_articles
    if len(items) > limit:
        if message.is_event:
            rule = f"up to {limit} articles in reply to an event"
            trigger = f"the {message.event} event"
        else:
            rule = "1 article only in reply to a follower's message (since 2018-10-12)"
            trigger = f"a follower's {message.msg_type} message"
        verdict.add(
            "article_rule",
            f"{len(items)} articles in reply to {trigger}: WeChat delivers only {limit} ({rule})",
        )
    for number, item in enumerate(items, 1):
        missing = [name for name in ARTICLE_FIELDS if item.find(name) is None]
        if missing:
            verdict.add("required_field", f"article {number} lacks {', '.join(missing)}")


def examine(push: Push, delivery: Delivery, account: Account, hold: bool = False) -> Verdict:
    """Everything WeChat would check about the answer to `push`; with `hold`, the server is expected to answer
    slow replies on one of WeChat's re-sends."""
    verdict = Verdict()
    if not _check_transport(delivery, verdict, hold):
        return verdict
    body = delivery.body
    if body.strip() in (b"", b"success"):
        verdict.reply = Reply(None, push.message.max_articles)
        return verdict
    root = _parse_body(body, verdict)
    if root is None:
        return verdict
    _check_content_type(delivery, verdict)
    encrypted = root.find("Encrypt") is not None
    if encrypted and push.mode == "plain":
        verdict.add("envelope", "the reply is encrypted but the push was in plaintext mode; WeChat cannot read it")
        verdict.follower_sees_error = True
        return verdict
    if encrypted:
        root = _open_envelope(root, account, verdict)
        if root is None:
            return verdict
    elif push.mode == "safe":
        verdict.add(
            "plaintext_in_safe_mode",
            "the reply is plaintext XML in safe mode; WeChat requires the encrypted envelope "
            "(Encrypt, MsgSignature, TimeStamp, Nonce)",
        )
        verdict.follower_sees_error = True
    _check_reply_fields(root, push.message, verdict)
    verdict.reply = Reply(root, push.message.max_articles)
    return verdict


def check_reply(push: Push, delivery: Delivery, account: Account) -> list[Problem]:
    return examine(push, delivery, account).problems


def check_handshake(echostr: str, delivery: Delivery) -> list[Problem]:
    """What the console's "submit" button checks: HTTP 200 and a body that is exactly the echostr."""
    verdict = Verdict()
    final = delivery.final
    if not final.answered:
        verdict.add("timeout", f"the console reports a timeout: {final.failure}")
        return verdict.problems
    if final.status != 200:
        verdict.add("http_status", f"HTTP {final.status} {final.reason}: the console reports 'token验证失败'")
        return verdict.problems
    body = final.body.decode("utf-8", "replace")
    if body != echostr:
        if body.strip() == echostr:
            detail = f"the body is {body!r}: whitespace around the echostr {echostr!r}"
        elif body.strip().strip("\"'") == echostr:
            detail = f"the body is {body!r}: the echostr {echostr!r} is quoted"
        else:
            detail = f"the body is {body[:120]!r}, not the echostr {echostr!r}"
        verdict.add("echostr", f"{detail}; the console reports 'token验证失败'")
    return verdict.problems


def render_for_follower(reply: Reply | None) -> str:
    """The reply as it appears in the follower's chat window."""
    if reply is None:
        return f"(system notice) {UNAVAILABLE}"
    kind = reply.msg_type
    if kind == "none":
        return "(no reply: the follower sees nothing)"
    if kind == "text":
        return reply.field("Content")
    if kind == "news":
        articles = reply.articles
        shown = articles[: reply.max_articles]
        lines = []
        for article in shown:
            lines.append(f"┌ {article['Title']}")
            if article["Description"]:
                lines.append(f"│ {article['Description']}")
            if article["PicUrl"]:
                lines.append(f"│ picture: {article['PicUrl']}")
            lines.append(f"└ link: {article['Url']}")
        if len(articles) > len(shown):
            lines.append(f"({len(articles) - len(shown)} more article(s) dropped by WeChat)")
        return "\n".join(lines) or "(an empty news card)"
    if kind == "image":
        return f"[picture] media {reply.field('Image/MediaId')}"
    if kind == "voice":
        return f"[voice message] media {reply.field('Voice/MediaId')}"
    if kind == "video":
        title = reply.field("Video/Title") or "(untitled)"
        description = reply.field("Video/Description")
        return (
            f"[video] {title}"
            + (f" — {description}" if description else "")
            + f" (media {reply.field('Video/MediaId')})"
        )
    if kind == "music":
        title = reply.field("Music/Title") or "(untitled)"
        description = reply.field("Music/Description")
        link = reply.field("Music/MusicUrl") or reply.field("Music/HQMusicUrl")
        return f"[music] {title}" + (f" — {description}" if description else "") + (f" ({link})" if link else "")
    if kind == "transfer_customer_service":
        return "(the conversation is handed to a customer-service agent; no message is shown)"
    return f"(a {kind!r} reply WeChat cannot show)"
