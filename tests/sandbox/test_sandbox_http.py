"""The sandbox's HTTP layer on raw sockets: keep-alive rules, bad requests, bodies, clean stop."""

from __future__ import annotations

import json
import socket

import requests

from sandbox.platform import FakeWeChat
from sandbox.server import SandboxServer


def exchange(server: SandboxServer, raw: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection((server.host, server.port), timeout=5) as connection:
        connection.sendall(raw)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_1_1_keeps_the_connection_until_connection_close(sandbox_server):
    request = b"GET /cgi-bin/getcallbackip HTTP/1.1\r\nHost: x\r\n\r\n"
    closing = b"GET /cgi-bin/getcallbackip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = exchange(sandbox_server, request * 3 + closing)
    assert answer.count(b"HTTP/1.1 200 OK") == 4
    assert answer.count(b"Connection: keep-alive") == 3
    assert answer.count(b"Connection: close") == 1


def test_http_1_0_closes_after_one_answer(sandbox_server):
    answer = exchange(sandbox_server, b"GET /cgi-bin/getcallbackip HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(body)["errcode"] == 41001


def test_malformed_request_line_answers_400_and_closes(sandbox_server):
    answer = exchange(sandbox_server, b"HELLO\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"Connection: close" in answer


def test_chunked_body_answers_411(sandbox_server):
    raw = (b"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"2\r\n{}\r\n0\r\n\r\n")
    assert exchange(sandbox_server, raw).startswith(b"HTTP/1.1 411 Length Required")


def test_expect_100_continue_is_honoured(sandbox_server):
    body = json.dumps({"grant_type": "client_credential", "appid": "wxsandbox00000001",
                       "secret": "sandbox-app-secret", "padding": "x" * 2000}).encode()
    raw = (b"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = exchange(sandbox_server, raw)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert b'"expires_in":7200' in answer


def test_stop_closes_idle_keep_alive_connections_and_frees_the_port():
    server = SandboxServer(FakeWeChat()).start()
    session = requests.Session()
    assert session.get(server.url + "/cgi-bin/getcallbackip", timeout=5).status_code == 200
    server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex((server.host, server.port)) != 0
    session.close()


def test_the_authorize_redirect_is_a_302_with_location(api):
    response = api.session.get(api.base_url + "/connect/oauth2/authorize/confirm", allow_redirects=False,
                               timeout=5, params={"appid": "wxsandbox00000001", "scope": "snsapi_base",
                                                  "redirect_uri": "http://localhost/cb", "decision": "deny"})
    assert response.status_code == 302
    assert response.headers["Location"] == "http://localhost/cb?state="
    assert response.content == b""
