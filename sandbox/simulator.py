"""Play WeChat's servers and a follower against a callback URL: send, verify (GET handshake), chat FILE.

The library is `messages` (build), `delivery` (HTTP like WeChat), `checks` (judge, render); this module
ties them into exchanges and scripted conversations, and is the `python -m sandbox` command line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

import yaml

from sandbox import delivery as http
from sandbox import platform_crypto
from sandbox.checks import Problem, Verdict, check_handshake, examine, render_for_follower
from sandbox.delivery import WECHAT_RETRIES, WECHAT_TIMEOUT, Delivery
from sandbox.messages import (
    DEFAULT_ACCOUNT,
    DEFAULT_FOLLOWER,
    KINDS,
    MODES,
    Account,
    Message,
    MessageError,
    Push,
    build_message,
    build_push,
)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line or conversation file that cannot be run as written."""


@dataclass
class Exchange:
    """One push, its delivery and the verdict on the answer."""

    push: Push
    delivery: Delivery
    verdict: Verdict
    expectation_problems: list[Problem] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return self.verdict.problems + self.expectation_problems

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.expectation_problems

    @property
    def follower_view(self) -> str:
        if self.verdict.follower_sees_error or self.verdict.reply is None:
            return render_for_follower(None)
        return render_for_follower(self.verdict.reply)


def exchange(
    url: str,
    message: Message,
    account: Account,
    mode: str = "plain",
    *,
    timeout: float = WECHAT_TIMEOUT,
    retries: int = WECHAT_RETRIES,
    push: Push | None = None,
) -> Exchange:
    """Push `message` to `url` as WeChat does (or re-send `push` verbatim) and judge the answer."""
    push = push or build_push(message, account, mode)
    delivery = http.send(url, push, timeout=timeout, retries=retries)
    return Exchange(push, delivery, examine(push, delivery, account))


def verify_handshake(
    url: str, token: str, *, echostr: str | None = None, timeout: float = WECHAT_TIMEOUT
) -> list[Problem]:
    """The console's "submit": GET with signature/timestamp/nonce/echostr; the body must be the echostr."""
    echostr = echostr or str(secrets.randbelow(10**19))
    timestamp = str(int(time.time()))
    nonce = str(secrets.randbelow(9 * 10**9) + 10**9)
    query = urlencode(
        {
            "signature": platform_crypto.signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }
    )
    return check_handshake(echostr, http.get(url, query, timeout=timeout))


# -- expectations and conversations ---------------------------------------------------------------


def check_expectation(expect: Mapping[str, Any], result: Exchange) -> list[Problem]:
    """Problems when the reply differs from `expect` (keys: type, contains, articles, equals)."""
    problems = []
    reply = result.verdict.reply
    actual_type = reply.msg_type if reply is not None and not result.verdict.follower_sees_error else "error"
    view = result.follower_view
    if "type" in expect and str(expect["type"]) != actual_type:
        problems.append(Problem("expectation", f"expected a {expect['type']} reply, got {actual_type}"))
    contains = expect.get("contains", [])
    for needle in [contains] if isinstance(contains, str) else contains:
        if str(needle) not in view:
            problems.append(Problem("expectation", f"expected the reply to contain {needle!r}"))
    if "equals" in expect and view != str(expect["equals"]):
        problems.append(Problem("expectation", f"expected the reply to be exactly {expect['equals']!r}, got {view!r}"))
    if "articles" in expect:
        count = len(reply.articles) if reply is not None else 0
        if count != int(expect["articles"]):
            problems.append(Problem("expectation", f"expected {expect['articles']} article(s), got {count}"))
    return problems


SEND_KEYS = {"type", "content", "key", "scene", "event", "recognition", "msgid", "from", "to", "fields"}
EXPECT_KEYS = {"type", "contains", "equals", "articles"}


def message_from_step(step: Mapping[str, Any], defaults: Mapping[str, Any]) -> Message:
    """A step is `{text: ...}` (shorthand) or `{send: {type: ..., content: ..., key: ...}}`."""
    if "text" in step:
        spec: Mapping[str, Any] = {"type": "text", "content": str(step["text"])}
    elif isinstance(step.get("send"), Mapping):
        spec = step["send"]
    else:
        raise UsageError(f"a step needs `text:` or `send: {{type: ...}}`, got {dict(step)!r}")
    unknown = set(spec) - SEND_KEYS
    if unknown:
        raise UsageError(
            f"unknown key(s) in send: {', '.join(sorted(unknown))} (known: {', '.join(sorted(SEND_KEYS))})"
        )

    def optional(name: str) -> str | None:
        return None if spec.get(name) is None else str(spec[name])

    return build_message(
        str(spec.get("type", "text")),
        content=optional("content"),
        key=optional("key"),
        scene=optional("scene"),
        event_name=optional("event"),
        recognition=optional("recognition"),
        msgid=int(spec["msgid"]) if spec.get("msgid") is not None else None,
        from_user=str(spec.get("from", defaults.get("from", DEFAULT_FOLLOWER))),
        to_user=str(spec.get("to", defaults.get("to", DEFAULT_ACCOUNT))),
        extra={str(k): str(v) for k, v in (spec.get("fields") or {}).items()},
    )


def load_conversation(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(defaults, steps) from a YAML file: a list of steps, or a mapping with `steps:` and defaults."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{path} is not valid YAML: {error}") from None
    if isinstance(document, list):
        defaults, steps = {}, document
    elif isinstance(document, dict) and isinstance(document.get("steps"), list):
        defaults, steps = {k: v for k, v in document.items() if k != "steps"}, document["steps"]
    else:
        raise UsageError(f"{path}: expected a list of steps or a mapping with `steps:`")
    for number, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            raise UsageError(f"{path}: step {number} is not a mapping")
        unknown = set(step.get("expect") or {}) - EXPECT_KEYS
        if unknown:
            raise UsageError(f"{path}: step {number} expects unknown key(s) {', '.join(sorted(unknown))}")
    return defaults, steps


def run_conversation(
    url: str,
    steps: list[dict[str, Any]],
    account: Account,
    mode: str = "plain",
    *,
    defaults: Mapping[str, Any] | None = None,
    timeout: float = WECHAT_TIMEOUT,
    retries: int = WECHAT_RETRIES,
    on_exchange: Callable[[int, Exchange], None] | None = None,
) -> list[Exchange]:
    """Run every step in order; `resend: true` re-sends the previous request byte for byte (a retry)."""
    defaults = defaults or {}
    results: list[Exchange] = []
    for number, step in enumerate(steps, 1):
        step_mode = str(step.get("mode") or mode)
        if step.get("resend"):
            if not results:
                raise UsageError(f"step {number}: `resend` needs a previous step")
            previous = results[-1].push
            result = exchange(
                url, previous.message, account, previous.mode, timeout=timeout, retries=retries, push=previous
            )
        else:
            try:
                message = message_from_step(step, defaults)
            except MessageError as error:
                raise UsageError(f"step {number}: {error}") from None
            result = exchange(url, message, account, step_mode, timeout=timeout, retries=retries)
        result.expectation_problems = check_expectation(step.get("expect") or {}, result)
        results.append(result)
        if on_exchange:
            on_exchange(number, result)
    return results


# -- printing ---------------------------------------------------------------------------------------


def describe_push(push: Push) -> str:
    message = push.message
    if message.is_event:
        key = message.get("EventKey")
        what = f"event {message.event}" + (f" (EventKey {key!r})" if key else "")
    else:
        detail = {
            "text": message.get("Content"),
            "voice": message.get("Recognition"),
            "location": message.get("Label"),
            "link": message.get("Title"),
        }.get(message.msg_type, "")
        what = f"{message.msg_type} {detail!r}" if detail else message.msg_type
    return f"→ {what} from {message.from_user} [{push.mode} mode]"


def print_exchange(result: Exchange, out: TextIO, number: int | None = None) -> None:
    prefix = f"{number}. " if number is not None else ""
    print(prefix + describe_push(result.push), file=out)
    attempts = len(result.delivery.attempts)
    status = f"HTTP {result.delivery.status}" if result.delivery.status is not None else "no answer"
    print(
        f"← {status} in {result.delivery.elapsed:.3f} s" + (f" after {attempts} deliveries" if attempts > 1 else ""),
        file=out,
    )
    print("  " + carried_by(result), file=out)
    for line in result.follower_view.splitlines():
        print("  " + line, file=out)
    for problem in result.problems:
        mark = "!" if problem.severity == "warning" else "✗"
        print(f"  {mark} {problem}", file=out)
    if result.ok:
        print("  ✓ valid reply", file=out)


ORDINALS = {1: "1st", 2: "2nd", 3: "3rd"}


def carried_by(result: Exchange, custom_messages: int = 0) -> str:
    """Which delivery carried the answer: a passive reply on the 1st, 2nd or 3rd delivery (WeChat re-sends the
    same bytes after each 5 s without an answer), or customer-service messages sent afterwards."""
    number = result.delivery.answered_by
    if number is None:
        return "answer: none (every delivery went unanswered)"
    passive = result.verdict.reply is not None and result.verdict.reply.root is not None
    if passive:
        return f"answer: passive reply on the {ORDINALS.get(number, f'{number}th')} delivery"
    if custom_messages:
        return f"answer: {custom_messages} custom/send message(s) after `success` on delivery {number}"
    return f"answer: none on delivery {number} (`success`: later by custom/send, if at all)"


def custom_messages_to(sandbox_url: str, openid: str, wait: float) -> list[dict]:
    """The custom/send messages the sandbox (another process) accepted for `openid`, once `wait` s pass
    without a new one."""
    from sandbox.control import SandboxControl

    control = SandboxControl(sandbox_url)
    try:
        seen: list[dict] = []
        quiet_until = time.monotonic() + wait
        while time.monotonic() < quiet_until:
            now = [body for body in control.delivered() if body.get("touser") == openid]
            if len(now) > len(seen):
                seen, quiet_until = now, time.monotonic() + wait
            time.sleep(0.2)
        return seen
    finally:
        control.close()


# -- command line -----------------------------------------------------------------------------------


def _account(args: argparse.Namespace) -> Account:
    token = args.token or os.environ.get("WECHAT_TOKEN", "")
    appid = args.appid or os.environ.get("WECHAT_APPID", "")
    aes_key = args.aes_key or os.environ.get("WECHAT_ENCODING_AES_KEY", "")
    if not token:
        raise UsageError("the Token is required: --token or WECHAT_TOKEN")
    if getattr(args, "mode", "plain") != "plain":
        if not aes_key or not appid:
            raise UsageError(f"{args.mode} mode needs --aes-key/WECHAT_ENCODING_AES_KEY and --appid/WECHAT_APPID")
        try:
            platform_crypto.aes_key_bytes(aes_key)
        except platform_crypto.CryptoError as error:
            raise UsageError(str(error)) from None
    return Account(token, appid, aes_key)


def _add_account_options(parser: argparse.ArgumentParser, with_mode: bool = True) -> None:
    parser.add_argument("--token", default="", help="the Token (default: $WECHAT_TOKEN)")
    parser.add_argument("--appid", default="", help="the AppID (default: $WECHAT_APPID)")
    parser.add_argument("--aes-key", default="", help="the EncodingAESKey (default: $WECHAT_ENCODING_AES_KEY)")
    if with_mode:
        parser.add_argument("--mode", choices=MODES, default="plain", help="message encryption mode")
        parser.add_argument("--retries", type=int, default=WECHAT_RETRIES, help="re-sends on no answer (3)")
    parser.add_argument("--timeout", type=float, default=WECHAT_TIMEOUT, help="seconds WeChat waits (5)")


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (UsageError, MessageError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _parse_fields(pairs: list[str]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise UsageError(f"--field takes NAME=VALUE, got {pair!r}")
        fields[name] = value
    return fields


def run_send(args: argparse.Namespace) -> int:
    account = _account(args)
    message = build_message(
        args.type or ("event" if args.event else "text"),
        content=args.content,
        key=args.key,
        scene=args.scene,
        event_name=args.event,
        recognition=args.recognition,
        msgid=args.msgid,
        from_user=args.from_user,
        to_user=args.to_user,
        extra=_parse_fields(args.field),
    )
    result = exchange(args.url, message, account, args.mode, timeout=args.timeout, retries=args.retries)
    print_exchange(result, sys.stdout)
    if args.sandbox and result.delivery.answered_by is not None and result.verdict.reply is not None \
            and result.verdict.reply.root is None:
        sent = custom_messages_to(args.sandbox, message.from_user, args.wait_custom)
        print("  " + carried_by(result, len(sent)), file=sys.stdout)
        for body in sent:
            print("  custom/send: " + json.dumps(body, ensure_ascii=False)[:300], file=sys.stdout)
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def run_verify(args: argparse.Namespace) -> int:
    account = _account(args)
    problems = verify_handshake(args.url, account.token, echostr=args.echostr, timeout=args.timeout)
    for problem in problems:
        print(f"✗ {problem}")
    if not problems:
        print("✓ the server echoed the echostr: the console would accept this URL")
    return EXIT_OK if not problems else EXIT_CHECK_FAILED


def run_chat(args: argparse.Namespace) -> int:
    defaults, steps = load_conversation(Path(args.file))
    url = args.url or defaults.get("url")
    if not url:
        raise UsageError("no server URL: pass --url or put `url:` in the conversation file")
    args.mode = args.mode or str(defaults.get("mode") or "plain")
    if args.mode not in MODES:
        raise UsageError(f"unknown mode {args.mode!r}; use plain, compatible or safe")
    account = _account(args)
    results = run_conversation(
        str(url),
        steps,
        account,
        args.mode,
        defaults=defaults,
        timeout=args.timeout,
        retries=args.retries,
        on_exchange=lambda number, result: print_exchange(result, sys.stdout, number),
    )
    failed = [number for number, result in enumerate(results, 1) if not result.ok]
    print(f"{len(results) - len(failed)}/{len(results)} steps valid" + (f"; failed: {failed}" if failed else ""))
    return EXIT_OK if not failed else EXIT_CHECK_FAILED


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `send`, `verify` and `chat` on the `python -m sandbox` command line."""
    send = subparsers.add_parser("send", help="push one message or event to a server like WeChat does")
    send.add_argument("url", help="the server URL, e.g. http://127.0.0.1:8080/weixin")
    send.add_argument(
        "--type",
        choices=KINDS,
        metavar="TYPE",
        help=f"message or event type (default: text, or event with --event): {', '.join(KINDS)}",
    )
    send.add_argument("--content", help="text Content (text), Label (location) or Title (link)")
    send.add_argument("--key", help="EventKey (click, view, menu events, scan)")
    send.add_argument("--scene", help="QR scene: subscribe sends EventKey qrscene_SCENE, scan sends SCENE")
    send.add_argument("--event", help="the Event value for --type event (any, even unknown ones)")
    send.add_argument("--recognition", help="voice Recognition (speech-to-text)")
    send.add_argument("--msgid", type=int, help="MsgId (default: a fresh one)")
    send.add_argument("--from", dest="from_user", default=DEFAULT_FOLLOWER, help="the follower's OpenID")
    send.add_argument("--to", dest="to_user", default=DEFAULT_ACCOUNT, help="the account's gh_ id")
    send.add_argument("--sandbox", help="the sandbox's URL: after a `success`, show its custom/send messages")
    send.add_argument("--wait-custom", type=float, default=15.0,
                      help="with --sandbox, seconds without a new custom/send message before stopping (15)")
    send.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", help="set any XML field")
    _add_account_options(send)
    send.set_defaults(run=_guarded(run_send))

    verify = subparsers.add_parser("verify", help="the console's URL check: GET with echostr")
    verify.add_argument("url")
    verify.add_argument("--echostr", help="the echostr to send (default: random digits)")
    _add_account_options(verify, with_mode=False)
    verify.set_defaults(run=_guarded(run_verify))

    chat = subparsers.add_parser("chat", help="run a scripted conversation from a YAML file")
    chat.add_argument("file")
    chat.add_argument("--url", help="the server URL (default: `url:` in the file)")
    _add_account_options(chat)
    chat.set_defaults(mode=None)  # the file's `mode:` applies unless --mode is given
    chat.set_defaults(run=_guarded(run_chat))
