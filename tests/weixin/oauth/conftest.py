"""Web authorization test stack: the fake WeChat over real HTTP, the app under real uWSGI pointed at it."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from devstack.processes import AppServer, RedisServer, free_port
from sandbox.platform import Clock, FakeWeChat
from sandbox.server import SandboxServer
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.waiting import wait_until

APP_SECRET = "oauth-test-app-secret-0123456789"
SESSION_SECRET = "oauth-test-session-secret-0123456789"


def oauth_env(redis_server: RedisServer, sandbox: SandboxServer, public_base_url: str) -> dict[str, str]:
    """What start_app passes, plus the web-authorization settings."""
    return {
        "WECHAT_TOKEN": TEST_TOKEN,
        "WECHAT_APPID": TEST_APPID,
        "WECHAT_APPSECRET": APP_SECRET,
        "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
        "REDIS_URL": redis_server.url,
        "LOG_LEVEL": "INFO",
        "DOTENV_FILE": "/dev/null",
        "WECHAT_API_BASE": sandbox.url,
        "WECHAT_OPEN_BASE": sandbox.url,
        "PUBLIC_BASE_URL": public_base_url,
        "SESSION_SECRET": SESSION_SECRET,
    }


@dataclass
class OAuthStack:
    """The fake WeChat (its clock, users, codes, injected faults), served over HTTP, and the app using it."""

    wechat: FakeWeChat
    sandbox: SandboxServer
    app: AppServer


@contextlib.contextmanager
def running_oauth_stack(directory: Path, redis_server: RedisServer) -> Iterator[OAuthStack]:
    """The app under uWSGI. Not `start_app`: PUBLIC_BASE_URL must name the app's own port, so the port
    is chosen before the start (AppServer, the shipped uwsgi.xml, is the class start_app uses)."""
    wechat = FakeWeChat(appid=TEST_APPID, secret=APP_SECRET, clock=Clock())
    with SandboxServer(wechat) as sandbox:
        port = free_port()
        server = AppServer(directory, oauth_env(redis_server, sandbox, f"http://127.0.0.1:{port}"), port=port).start()
        try:
            yield OAuthStack(wechat, sandbox, server)
        finally:
            server.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "moves_wechat_clock: the test advances the fake WeChat's clock, so it gets a stack of its own"
    )


@pytest.fixture(scope="module")
def module_oauth_stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[OAuthStack]:
    with running_oauth_stack(tmp_path_factory.mktemp("oauth-app"), redis_server) as stack:
        yield stack


@pytest.fixture()
def oauth_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[OAuthStack]:
    """The module's stack; a stack of the test's own when it moves the fake's clock, which only goes
    forward: the tokens and codes of every later test would otherwise be issued 31 days on."""
    if request.node.get_closest_marker("moves_wechat_clock") is None:
        yield request.getfixturevalue("module_oauth_stack")
        return
    with running_oauth_stack(tmp_path_factory.mktemp("oauth-app"), redis_server) as stack:
        yield stack


@pytest.fixture()
def wechat(oauth_stack: OAuthStack) -> FakeWeChat:
    return oauth_stack.wechat


@pytest.fixture()
def sandbox(oauth_stack: OAuthStack) -> SandboxServer:
    return oauth_stack.sandbox


@pytest.fixture()
def oauth_app(oauth_stack: OAuthStack) -> AppServer:
    return oauth_stack.app


@dataclass
class Visit:
    """A follower's browser: one cookie jar across the app and the sandbox's authorize page."""

    app_url: str
    session: requests.Session

    def get(self, url: str, follow: bool = True) -> requests.Response:
        return self.session.get(urljoin(self.app_url, url), allow_redirects=follow, timeout=10)

    def post(self, url: str, follow: bool = True) -> requests.Response:
        return self.session.post(urljoin(self.app_url, url), allow_redirects=follow, timeout=10)

    def authorize_page(self, scope: str = "") -> requests.Response:
        """/oauth/login, followed to the sandbox's approve/deny page."""
        page = self.get("/oauth/login" + (f"?scope={scope}" if scope else ""))
        assert "/connect/oauth2/authorize" in page.url, page.url
        return page

    def button_href(self, page: requests.Response, button_id: str) -> str:
        href = re.search(rf'id="{button_id}" href="([^"]+)"', page.text).group(1)
        return urljoin(page.url, html.unescape(href))

    def callback_url(self, decision: str = "approve", scope: str = "") -> str:
        """Go through the authorize page and return where WeChat sends the browser (not followed)."""
        page = self.authorize_page(scope)
        answer = self.session.get(self.button_href(page, decision), allow_redirects=False, timeout=10)
        assert answer.status_code == 302
        return answer.headers["Location"]

    def sign_in(self, scope: str = "") -> requests.Response:
        """Approve and land on the profile page."""
        return self.get(self.callback_url("approve", scope))


@pytest.fixture()
def visit(oauth_app: AppServer) -> Iterator[Visit]:
    session = requests.Session()
    yield Visit(oauth_app.url, session)
    session.close()




def log_contains(app: AppServer, text: str, timeout: float = 3.0) -> bool:
    """True once the log has `text` (uWSGI's master writes the workers' lines a moment after the response
    went out); fails loudly with the log's tail at `timeout`, like every wait in the tests (tests/waiting.py)."""
    wait_until(lambda: text in app.process.log_text(), timeout, describe=lambda: app.process.log_text()[-2000:])
    return True
