"""The web.py view (Handle) and the direct route in front of it run the same code and answer the same."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_handle_post_through_web_py_and_the_direct_route_give_the_same_answer(redis_server) -> None:
    # index.py configures itself from the environment at import, so it runs in its own interpreter.
    script = textwrap.dedent(
        """
        import io, sys, time
        import index
        from tests.wechat_requests import fixture, signed_query, with_fresh_ids
        from urllib.parse import urlencode

        def call(application, body, query):
            environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/weixin", "QUERY_STRING": urlencode(query),
                       "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "SERVER_NAME": "t",
                       "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SCRIPT_NAME": ""}
            seen = {}
            chunks = application(environ, lambda status, headers: seen.update(status=status, headers=dict(headers)))
            return seen["status"], seen["headers"]["Content-Type"], b"".join(chunks).decode()

        web_py_only = index.web_py_app.wsgifunc()
        for name in ("messages/text.xml", "events/subscribe.xml", "attacks/xxe_file.xml"):
            answers = []
            for application in (web_py_only, index.application):
                answers.append(call(application, with_fresh_ids(fixture(name)), signed_query("routetoken")))
            (status_a, type_a, body_a), (status_b, type_b, body_b) = answers
            assert (status_a, type_a) == (status_b, type_b), answers
            assert body_a.replace(body_a[body_a.find("<CreateTime>"):body_a.find("</CreateTime>")], "") == \\
                body_b.replace(body_b[body_b.find("<CreateTime>"):body_b.find("</CreateTime>")], ""), answers
            print(name, status_a, type_a)
        """
    )
    env = {**os.environ, "WECHAT_TOKEN": "routetoken", "REDIS_URL": redis_server.url, "DOTENV_FILE": "/dev/null"}
    env.pop("WECHAT_ENCODING_AES_KEY", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "messages/text.xml 200 OK application/xml; charset=utf-8" in result.stdout
    assert "attacks/xxe_file.xml 400 Bad Request text/plain; charset=utf-8" in result.stdout
