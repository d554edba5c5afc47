"""The simulator against tiny real callback servers, good and deliberately broken, each on its own port.

The good server is built on wechatpy (its signature check, crypto and replies), so the simulator is
checked against an implementation that is not the project's.
"""

from __future__ import annotations

import argparse
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import ArticlesReply, TextReply
from wechatpy.utils import check_signature

from devstack.processes import free_port
from sandbox import simulator
from sandbox.checks import UNAVAILABLE, render_for_follower
from sandbox.messages import Account, build_message

ACCOUNT = Account("sandboxtoken", "wx0123456789abcdef", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
ARTICLE = {
    "title": "微博热门",
    "description": "今日精选",
    "image": "https://example.com/p.png",
    "url": "https://m.weibo.cn/",
}

Answer = Callable[[object, "WeChatCrypto | None", dict], tuple[str, list[tuple[str, str]], bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class CallbackServer:
    """A callback URL on loopback: checks the signature and decrypts with wechatpy, then `answer` replies."""

    def __init__(self, answer: Answer, account: Account = ACCOUNT) -> None:
        self.answer = answer
        self.account = account
        self.requests: list[tuple[str, str, bytes]] = []
        self.stopping = threading.Event()
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, self.app, _ThreadingServer, _QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/weixin"

    def sleep(self, seconds: float) -> None:
        """Wait like a slow handler, but stop waiting when the test ends."""
        self.stopping.wait(seconds)

    def app(self, environ: dict, start_response: Callable) -> list[bytes]:
        query = {key: values[0] for key, values in parse_qs(environ["QUERY_STRING"]).items()}
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.requests.append((environ["REQUEST_METHOD"], environ["QUERY_STRING"], body))
        try:
            check_signature(self.account.token, query["signature"], query["timestamp"], query["nonce"])
        except (InvalidSignatureException, KeyError):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"signature check failed"]
        if environ["REQUEST_METHOD"] == "GET":
            status, headers, payload = self.answer(None, None, query)
            start_response(status, headers)
            return [payload]
        crypto = None
        xml = body
        if query.get("encrypt_type") == "aes":
            crypto = WeChatCrypto(self.account.token, self.account.encoding_aes_key, self.account.appid)
            xml = crypto.decrypt_message(body, query["msg_signature"], query["timestamp"], query["nonce"])
        status, headers, payload = self.answer(parse_message(xml), crypto, query)
        start_response(status, headers)
        return [payload]

    def __enter__(self) -> CallbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


XML_TYPE = ("Content-Type", "text/xml; charset=utf-8")


def xml_answer(make_reply: Callable[[object], str]) -> Answer:
    """An answer that renders `make_reply(message)` and encrypts it when the push was encrypted."""

    def answer(message, crypto, query):
        xml = make_reply(message)
        if crypto is not None:
            xml = crypto.encrypt_message(xml, query["nonce"], query["timestamp"])
        return "200 OK", [XML_TYPE], xml.encode("utf-8")

    return answer


def raw_answer(body: bytes | str, status: str = "200 OK", headers: list | None = None) -> Answer:
    payload = body.encode("utf-8") if isinstance(body, str) else body
    # A fresh header list per response: wsgiref appends Content-Length to the list it is given.
    return lambda message, crypto, query: (status, list(headers or [XML_TYPE]), payload)


@pytest.fixture()
def serve() -> Iterator[Callable[..., CallbackServer]]:
    servers: list[CallbackServer] = []

    def start(answer: Answer, account: Account = ACCOUNT) -> CallbackServer:
        server = CallbackServer(answer, account).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


def run(server: CallbackServer, kind: str = "text", mode: str = "plain", **options) -> simulator.Exchange:
    timeout = options.pop("timeout", 2.0)
    retries = options.pop("retries", 3)
    message = build_message(kind, **options)
    return simulator.exchange(server.url, message, ACCOUNT, mode, timeout=timeout, retries=retries)


def messages_of(result: simulator.Exchange) -> list[str]:
    return [str(problem) for problem in result.problems]


def codes_of(result: simulator.Exchange) -> list[str]:
    return [problem.code for problem in result.problems]


# -- good servers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_a_correct_text_reply_is_valid_in_every_mode(serve, mode):
    server = serve(xml_answer(lambda message: create_reply("你好 " + message.content, message).render()))
    result = run(server, "text", mode, content="在吗")
    assert result.problems == []
    assert result.ok
    assert result.follower_view == "你好 在吗"


def test_a_single_article_news_reply_renders_as_a_card(serve):
    server = serve(xml_answer(lambda message: create_reply([ARTICLE], message).render()))
    result = run(server, "text", "safe", content="微博")
    assert result.ok, messages_of(result)
    assert result.follower_view == (
        "┌ 微博热门\n│ 今日精选\n│ picture: https://example.com/p.png\n└ link: https://m.weibo.cn/"
    )


def test_three_articles_in_reply_to_an_event_are_allowed(serve):
    server = serve(xml_answer(lambda message: create_reply([ARTICLE] * 3, message).render()))
    assert run(server, "click", key="MENU").ok


@pytest.mark.parametrize("body", [b"success", b""])
def test_success_or_an_empty_body_is_no_reply(serve, body):
    server = serve(raw_answer(body, headers=[("Content-Type", "text/plain")]))
    result = run(server, "subscribe", "safe")
    assert result.ok
    assert result.verdict.reply.msg_type == "none"
    assert result.follower_view == "(no reply: the follower sees nothing)"


# -- broken servers: one precise message each ----------------------------------------------------


def test_a_wrong_msg_signature_in_the_safe_envelope_is_reported(serve):
    def answer(message, crypto, query):
        xml = crypto.encrypt_message(create_reply("hi", message).render(), query["nonce"], query["timestamp"])
        good = xml.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
        return "200 OK", [XML_TYPE], xml.replace(good, "0" * 40).encode()

    result = run(serve(answer), "text", "safe")
    assert codes_of(result) == ["msg_signature"]
    (message,) = messages_of(result)
    assert message.startswith(f"MsgSignature '{'0' * 40}' does not verify over the envelope's TimeStamp '")
    assert message.endswith("WeChat drops the reply")
    assert result.follower_view == f"(system notice) {UNAVAILABLE}"


def test_a_cdata_terminator_that_breaks_the_xml_is_reported(serve):
    def naive(message):
        return (
            f"<xml><ToUserName><![CDATA[{message.source}]]></ToUserName>"
            f"<FromUserName><![CDATA[{message.target}]]></FromUserName><CreateTime>1</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{message.content}]]></Content></xml>"
        )

    result = run(serve(xml_answer(naive)), "text", content="a]]>b")
    assert codes_of(result) == ["malformed_xml"]
    (message,) = messages_of(result)
    assert message.startswith("the reply is not well-formed XML: not well-formed (invalid token) at line 1, column")
    assert message.endswith("— a ']]>' inside the text closes its CDATA section early (split it as ']]]]><![CDATA[>')")


def test_three_articles_in_reply_to_a_text_message_are_reported(serve):
    server = serve(xml_answer(lambda message: create_reply([ARTICLE] * 3, message).render()))
    result = run(server, "text", content="微博")
    assert messages_of(result) == [
        "3 articles in reply to a follower's text message: WeChat delivers only 1 "
        "(1 article only in reply to a follower's message (since 2018-10-12))"
    ]
    assert "(2 more article(s) dropped by WeChat)" in result.follower_view


def test_nine_articles_in_reply_to_an_event_are_reported(serve):
    def nine(message):
        reply = ArticlesReply(message=message)
        for _ in range(9):  # wechatpy still allows 10, the pre-2018 limit
            reply.add_article(ARTICLE)
        return reply.render()

    result = run(serve(xml_answer(nine)), "subscribe")
    assert messages_of(result) == [
        "9 articles in reply to the subscribe event: WeChat delivers only 8 (up to 8 articles in reply to an event)"
    ]


def test_a_slow_server_is_retried_like_wechat_and_reported(serve):
    # The 6 s delay against WeChat's 5 s, scaled down: 0.6 s against 0.5 s.
    def slow(message, crypto, query):
        server.sleep(0.6)
        return "200 OK", [XML_TYPE], create_reply("late", message).render().encode()

    server = serve(slow)
    started = time.monotonic()
    result = run(server, "text", timeout=0.5)
    assert time.monotonic() - started < 5
    assert len(result.delivery.attempts) == 4
    assert len(server.requests) == 4
    assert len(set(server.requests)) == 1, "WeChat re-sends the identical request"
    assert codes_of(result) == ["timeout"]
    (message,) = messages_of(result)
    assert message == (
        f"WeChat gave up after 0.5 s; the follower sees {UNAVAILABLE} (no usable answer to 4 deliveries of the "
        "same request — #1: no answer within 0.5 s; #2: no answer within 0.5 s; #3: no answer within 0.5 s; "
        "#4: no answer within 0.5 s)"
    )
    assert result.follower_view == f"(system notice) {UNAVAILABLE}"


@pytest.mark.timeout(60)
def test_the_default_timeout_is_wechats_five_seconds_with_three_retries(serve):
    def six_seconds(message, crypto, query):
        server.sleep(6)
        return "200 OK", [XML_TYPE], create_reply("too late", message).render().encode()

    server = serve(six_seconds)
    started = time.monotonic()
    result = simulator.exchange(server.url, build_message("text"), ACCOUNT)
    elapsed = time.monotonic() - started
    assert 19.5 < elapsed < 25
    assert len(server.requests) == 4
    assert messages_of(result)[0].startswith(f"WeChat gave up after 5 s; the follower sees {UNAVAILABLE}")


def test_an_answer_that_comes_only_on_a_retry_is_reported(serve):
    def slow_once(message, crypto, query):
        if len(server.requests) == 1:
            server.sleep(0.6)
        return "200 OK", [XML_TYPE], create_reply("second time lucky", message).render().encode()

    server = serve(slow_once)
    result = run(server, "text", timeout=0.5)
    assert messages_of(result) == [
        "the first delivery got no usable answer (#1: no answer within 0.5 s); "
        "WeChat re-sent the identical request and only delivery #2 was answered"
    ]
    assert result.follower_view == "second time lucky"


def test_to_and_from_that_are_not_swapped_are_reported(serve):
    def unswapped(message):
        return TextReply(source=message.source, target=message.target, content="hi").render()

    result = run(serve(xml_answer(unswapped)), "text", from_user="oFollower", to_user="gh_account")
    assert messages_of(result) == [
        "ToUserName is 'gh_account' but must be the follower's OpenID 'oFollower' (the push's FromUserName)",
        "FromUserName is 'oFollower' but must be the account's id 'gh_account' (the push's ToUserName)",
    ]


def test_a_json_reply_is_reported(serve):
    server = serve(raw_answer('{"errcode": 0, "errmsg": "ok"}', headers=[("Content-Type", "application/json")]))
    result = run(server, "text")
    assert messages_of(result) == [
        f"the reply is JSON, not XML: WeChat calls it abnormal data and the follower sees {UNAVAILABLE}"
    ]


def test_an_html_page_is_reported(serve):
    result = run(serve(raw_answer("<!DOCTYPE html><html><body>hello</body></html>")), "text")
    assert messages_of(result) == [
        f"the reply is an HTML page, not XML: WeChat calls it abnormal data and the follower sees {UNAVAILABLE}"
    ]


def test_a_missing_required_field_is_reported(serve):
    def image_without_media(message):
        return (
            f"<xml><ToUserName><![CDATA[{message.source}]]></ToUserName>"
            f"<FromUserName><![CDATA[{message.target}]]></FromUserName><CreateTime>1700000000</CreateTime>"
            "<MsgType><![CDATA[image]]></MsgType><Image></Image></xml>"
        )

    result = run(serve(xml_answer(image_without_media)), "image")
    assert messages_of(result) == ["the image reply needs <Image><MediaId>; it is missing"]


def test_a_500_with_a_traceback_is_reported_and_retried(serve):
    def crash(message, crypto, query):
        try:
            _ = 1 / 0
        except ZeroDivisionError:
            return "500 Internal Server Error", [("Content-Type", "text/plain")], traceback.format_exc().encode()
        raise AssertionError("unreachable")

    server = serve(crash)
    result = run(server, "text")
    assert len(server.requests) == 4
    assert messages_of(result) == [
        "HTTP 500 Internal Server Error: WeChat counts it as no answer and retries",
        "the 500 body is a Python traceback (ZeroDivisionError: division by zero): it leaks code details",
        f"WeChat gave up after 4 deliveries; the follower sees {UNAVAILABLE} (no usable answer to 4 deliveries "
        "of the same request — #1: HTTP 500 Internal Server Error; #2: HTTP 500 Internal Server Error; "
        "#3: HTTP 500 Internal Server Error; #4: HTTP 500 Internal Server Error)",
    ]


def test_a_403_for_a_wrong_token_is_reported_without_retry(serve):
    server = serve(raw_answer("never"), account=Account("anothertoken"))
    result = run(server, "text")
    assert len(server.requests) == 1
    assert messages_of(result) == [
        f"HTTP 403 Forbidden: WeChat expects 200; the follower sees {UNAVAILABLE} — the server refused the push; "
        "usually a failed signature check (same Token?)"
    ]


def test_a_plaintext_reply_in_safe_mode_is_reported(serve):
    def plaintext(message, crypto, query):
        return "200 OK", [XML_TYPE], create_reply("hi", message).render().encode()

    result = run(serve(plaintext), "text", "safe")
    assert messages_of(result) == [
        "the reply is plaintext XML in safe mode; WeChat requires the encrypted envelope "
        "(Encrypt, MsgSignature, TimeStamp, Nonce)"
    ]


def test_an_envelope_for_another_appid_is_reported(serve):
    def other_app(message, crypto, query):
        other = WeChatCrypto(ACCOUNT.token, ACCOUNT.encoding_aes_key, "wxffffffffffffffff")
        xml = other.encrypt_message(create_reply("hi", message).render(), query["nonce"], query["timestamp"])
        return "200 OK", [XML_TYPE], xml.encode()

    result = run(serve(other_app), "text", "safe")
    assert messages_of(result) == [
        "the AppID inside the encrypted reply is 'wxffffffffffffffff', not the account's 'wx0123456789abcdef'"
    ]


def test_an_envelope_without_msg_signature_and_nonce_is_reported(serve):
    def bare(message, crypto, query):
        xml = crypto.encrypt_message(create_reply("hi", message).render(), query["nonce"], query["timestamp"])
        encrypt = xml.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        return (
            "200 OK",
            [XML_TYPE],
            f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><TimeStamp>1</TimeStamp></xml>".encode(),
        )

    result = run(serve(bare), "text", "safe")
    assert messages_of(result) == ["the encrypted envelope lacks MsgSignature, Nonce"]


def test_an_xml_reply_labelled_as_html_is_reported(serve):
    server = serve(
        xml_answer(lambda message: create_reply("hi", message).render()),
    )
    server.answer = (
        lambda message, crypto, query: ("200 OK", [("Content-Type", "text/html")],
                                        create_reply("hi", message).render().encode())
    )  # fmt: skip
    assert messages_of(run(server, "text")) == ["Content-Type is text/html on an XML reply; send text/xml"]


def test_nothing_listening_is_reported_as_no_answer():
    url = "http://127.0.0.1:1/weixin"
    result = simulator.exchange(url, build_message("text"), ACCOUNT, timeout=1, retries=1)
    (message,) = messages_of(result)
    assert message.startswith(f"WeChat gave up after 2 deliveries; the follower sees {UNAVAILABLE}")
    assert "#1: connection refused" in message


# -- the GET handshake --------------------------------------------------------------------------------


def echo(transform: Callable[[str], str] = lambda echostr: echostr) -> Answer:
    return lambda message, crypto, query: (
        "200 OK",
        [("Content-Type", "text/plain")],
        transform(query["echostr"]).encode(),
    )


def test_a_server_that_echoes_the_echostr_passes_the_handshake(serve):
    server = serve(echo())
    assert simulator.verify_handshake(server.url, ACCOUNT.token, echostr="4375120948345356249") == []
    assert server.requests[0][0] == "GET"


def test_an_echostr_with_a_trailing_newline_fails_the_handshake(serve):
    problems = simulator.verify_handshake(serve(echo(lambda e: e + "\n")).url, ACCOUNT.token, echostr="42")
    assert [str(problem) for problem in problems] == [
        "the body is '42\\n': whitespace around the echostr '42'; the console reports 'token验证失败'"
    ]


def test_a_handshake_refused_with_403_is_reported(serve):
    problems = simulator.verify_handshake(serve(echo()).url, "wrongtoken", echostr="42")
    assert [str(problem) for problem in problems] == ["HTTP 403 Forbidden: the console reports 'token验证失败'"]


# -- the command line ------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    simulator.add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.run(args)


CREDENTIALS = ("--token", ACCOUNT.token, "--appid", ACCOUNT.appid, "--aes-key", ACCOUNT.encoding_aes_key)


def test_send_prints_the_reply_and_exits_0_when_valid(serve, capsys):
    server = serve(xml_answer(lambda message: create_reply([ARTICLE], message).render()))
    assert cli("send", server.url, "--content", "微博", "--mode", "safe", *CREDENTIALS) == 0
    out = capsys.readouterr().out
    assert "→ text '微博' from o6_bmjrPTlm6_2sgVt7hMZOPfL2M [safe mode]" in out
    assert "┌ 微博热门" in out
    assert "✓ valid reply" in out
    assert ACCOUNT.encoding_aes_key not in out and ACCOUNT.token not in out


def test_send_exits_1_and_says_why_when_a_check_fails(serve, capsys):
    server = serve(xml_answer(lambda message: create_reply([ARTICLE] * 3, message).render()))
    assert cli("send", server.url, "--type", "voice", "--recognition", "微博", *CREDENTIALS) == 1
    assert "✗ 3 articles in reply to a follower's voice message: WeChat delivers only 1" in capsys.readouterr().out


def test_send_reads_the_token_from_the_environment(serve, capsys, monkeypatch):
    monkeypatch.setenv("WECHAT_TOKEN", ACCOUNT.token)
    server = serve(xml_answer(lambda message: create_reply("ok", message).render()))
    assert cli("send", server.url, "--event", "brand_new_event", "--key", "k") == 0
    assert "→ event brand_new_event (EventKey 'k')" in capsys.readouterr().out


def test_usage_errors_exit_2_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv("WECHAT_TOKEN", raising=False)
    assert cli("send", "http://127.0.0.1:1/weixin") == 2
    assert capsys.readouterr().err == "error: the Token is required: --token or WECHAT_TOKEN\n"
    assert cli("send", "http://127.0.0.1:1/weixin", "--token", "t0ken", "--mode", "safe") == 2
    assert "safe mode needs --aes-key" in capsys.readouterr().err
    assert cli("send", "http://127.0.0.1:1/weixin", "--token", "t0ken", "--type", "event") == 2
    assert "--type event needs --event NAME" in capsys.readouterr().err


def test_verify_exits_0_on_a_correct_echo_and_1_otherwise(serve, capsys):
    assert cli("verify", serve(echo()).url, "--token", ACCOUNT.token) == 0
    assert cli("verify", serve(echo(lambda e: f'"{e}"')).url, "--token", ACCOUNT.token) == 1
    assert "is quoted" in capsys.readouterr().out


def test_chat_runs_steps_checks_expectations_and_resends_identically(serve, tmp_path, capsys):
    server = serve(xml_answer(lambda message: create_reply(f"echo: {getattr(message, 'content', message.type)}",
                                                           message).render()))  # fmt: skip
    script = tmp_path / "chat.yaml"
    script.write_text(
        "mode: safe\n"
        "steps:\n"
        "  - text: 你好\n"
        "    expect: {type: text, equals: 'echo: 你好'}\n"
        "  - resend: true\n"
        "    expect: {type: text, contains: 你好}\n"
        "  - send: {type: click, key: K}\n"
        "    expect: {type: news}\n",
        encoding="utf-8",
    )
    assert cli("chat", str(script), "--url", server.url, *CREDENTIALS[:4], "--aes-key", ACCOUNT.encoding_aes_key) == 1
    out = capsys.readouterr().out
    assert "✗ expected a news reply, got text" in out
    assert out.rstrip().endswith("2/3 steps valid; failed: [3]")
    assert server.requests[0] == server.requests[1]


def test_chat_refuses_a_malformed_file(tmp_path, capsys):
    script = tmp_path / "chat.yaml"
    script.write_text("- send: {type: text, colour: red}\n", encoding="utf-8")
    assert cli("chat", str(script), "--url", "http://127.0.0.1:1/", "--token", "t0ken") == 2
    assert "unknown key(s) in send: colour" in capsys.readouterr().err


def test_render_for_follower_shows_each_media_kind():
    def reply_of(xml: str):
        from sandbox.checks import Reply, parse_xml

        return Reply(parse_xml(f"<xml>{xml}</xml>"))

    assert render_for_follower(reply_of("<MsgType>image</MsgType><Image><MediaId>m1</MediaId></Image>")) == (
        "[picture] media m1"
    )
    assert (
        render_for_follower(
            reply_of("<MsgType>music</MsgType><Music><Title>歌</Title><MusicUrl>http://x/a.mp3</MusicUrl></Music>")
        )
        == "[music] 歌 (http://x/a.mp3)"
    )
    assert render_for_follower(None) == f"(system notice) {UNAVAILABLE}"
