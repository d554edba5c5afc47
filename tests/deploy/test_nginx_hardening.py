"""The shipped nginx site's defences, through real nginx and uWSGI (both from the shipped files): no version
banner, pages over HTTPS with HSTS, no framing, per-address limits, an access log without query strings,
large headers that never become a 502, and a /health that tells the public only up or down.

A client bound to 127.0.0.2 plays a remote visitor: nginx and the app see that address, not the server's own."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import requests

from sandbox.messages import build_message
from sandbox.simulator import exchange
from tests.deploy.conftest import Stack

PUBLIC_HOST = "weixin.example.com"


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, tls: bool = False,
    source: str = "127.0.0.2",
) -> tuple[int, dict[str, str], bytes]:
    """One request from `source` (a remote visitor); (status, headers with lower-case names, body)."""
    if tls:
        import ssl

        context = ssl._create_unverified_context()  # the stack's self-signed certificate
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, source_address=(source, 0), context=context
        )
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def https_port(stack: Stack) -> int:
    return stack.nginx.https_port


def http_port(stack: Stack) -> int:
    return stack.nginx.http_port


def test_nginx_names_no_version_in_headers_or_error_pages(stack: Stack) -> None:
    status, headers, body = request(http_port(stack), "GET", "/static/missing.css")
    assert status == 404
    assert headers["server"] == "nginx"
    assert b"nginx/" not in body


def test_the_pages_redirect_to_https_for_a_public_host(stack: Stack) -> None:
    for path in ("/oauth/login", "/oauth/callback?code=abc&state=x", "/me"):
        status, headers, _ = request(http_port(stack), "GET", path, {"Host": PUBLIC_HOST})
        assert status == 301, path
        assert headers["location"] == f"https://{PUBLIC_HOST}{path}"
    # WeChat's endpoint and the health check stay where they are.
    status, headers, _ = request(http_port(stack), "GET", "/weixin", {"Host": PUBLIC_HOST})
    assert status == 200 and "location" not in headers
    status, _, _ = request(http_port(stack), "GET", "/health", {"Host": PUBLIC_HOST})
    assert status == 200


def test_loopback_hosts_keep_the_pages_on_http_for_local_development(stack: Stack) -> None:
    status, _, _ = request(http_port(stack), "GET", "/me", {"Host": "127.0.0.1"})
    assert status != 301


def test_https_responses_carry_hsts_and_http_ones_do_not(stack: Stack) -> None:
    _, headers, _ = request(https_port(stack), "GET", "/health", {"Host": PUBLIC_HOST}, tls=True)
    assert headers["strict-transport-security"] == "max-age=31536000"
    _, headers, _ = request(http_port(stack), "GET", "/health", {"Host": PUBLIC_HOST})
    assert "strict-transport-security" not in headers


def test_pages_cannot_be_framed_by_another_site(stack: Stack) -> None:
    for path in ("/me", "/oauth/login", "/health"):
        _, headers, _ = request(https_port(stack), "GET", path, {"Host": PUBLIC_HOST}, tls=True)
        assert headers["x-frame-options"] == "DENY", path
        assert headers["content-security-policy"] == "frame-ancestors 'none'", path


def test_health_and_pages_are_rate_limited_per_address(stack: Stack) -> None:
    # Its own address: the limits of the other tests' visitor stay untouched.
    statuses = [request(http_port(stack), "GET", "/health", source="127.0.0.3")[0] for _ in range(40)]
    assert 429 in statuses  # 5 a second with a burst of 10: 40 back-to-back requests cannot all pass
    assert statuses[0] == 200
    statuses = [
        request(http_port(stack), "GET", "/me", {"Host": "127.0.0.1"}, source="127.0.0.3")[0] for _ in range(60)
    ]
    assert 429 in statuses
    # Another address is not affected by this one's excess.
    assert requests.get(f"{stack.nginx.url}/health", timeout=5).status_code == 200


@contextmanager
def slow_uploads(port: int, count: int, source: str) -> Iterator[list[socket.socket]]:
    """`count` connections from `source`, each announcing a body it never sends (a slow client)."""
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10,
                                                                source_address=(source, 0)))
            sock.sendall(b"POST /weixin?signature=x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
            sockets.append(sock)
        yield sockets


def test_one_address_cannot_hold_more_than_64_connections(stack: Stack) -> None:
    with slow_uploads(http_port(stack), 64, source="127.0.0.4"):
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline:  # nginx counts a connection once it has read its headers
            status = request(http_port(stack), "GET", "/weixin", source="127.0.0.4")[0]
            if status == 429:
                break
            time.sleep(0.05)
        assert status == 429
        # The server itself is still served.
        assert requests.get(f"{stack.nginx.url}/weixin", timeout=5).status_code == 200


def test_the_access_log_holds_no_query_string(stack: Stack) -> None:
    result = exchange(stack.url, build_message("text", content="微博"), stack.account, "plain")
    assert result.delivery.status == 200
    log_path = stack.nginx.directory / "weixin.access.log"
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:  # nginx writes the line after the response
        text = log_path.read_text() if log_path.exists() else ""
        if "POST /weixin " in text:
            break
        time.sleep(0.05)
    assert "POST /weixin HTTP/1.1" in text
    assert "signature=" not in text and "openid=" not in text and "nonce=" not in text


def test_large_request_headers_that_nginx_accepts_reach_the_app(stack: Stack) -> None:
    # Three 7 KB cookies: within nginx's 4 x 8 KB header buffers, more than uWSGI's old 8 KB buffer.
    headers = {f"X-Big-{n}": "v" * 7000 for n in range(3)}
    status, _, body = request(http_port(stack), "GET", "/weixin", headers)
    assert status == 200, body[:200]


def test_health_tells_the_public_only_up_or_down(stack: Stack) -> None:
    status, _, body = request(http_port(stack), "GET", "/health", {"Host": PUBLIC_HOST})
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    # The server itself sees the details.
    report = requests.get(f"{stack.nginx.url}/health", timeout=5).json()
    assert report["redis"]["reachable"] is True and "token" in report
