"""Web authorization in real headless Chromium through real nginx (WeUI from /static/) and uWSGI.

Set OAUTH_SCREENSHOT=docs/oauth-profile.png to refresh the committed screenshot of the profile page.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from devstack.processes import NginxServer, RedisServer, UwsgiServer, find_program, free_port
from sandbox.platform import DEFAULT_FOLLOWER_OPENID, Clock, FakeWeChat
from sandbox.server import SandboxServer
from tests.conftest import TEST_APPID
from tests.weixin.oauth.conftest import APP_SECRET, oauth_env

ROOT = Path(__file__).resolve().parents[3]
NICKNAME = "小程同学"
WINDOW = (390, 844)  # an iPhone 12-15 sized viewport, CSS pixels
AVATAR_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="132" height="132" viewBox="0 0 132 132">
<rect width="132" height="132" fill="#91d5ff"/><circle cx="66" cy="54" r="26" fill="#fff2e8"/>
<path d="M22 132c4-30 22-44 44-44s40 14 44 44z" fill="#07c160"/>
<circle cx="57" cy="52" r="3" fill="#333"/><circle cx="75" cy="52" r="3" fill="#333"/>
<path d="M58 64q8 7 16 0" stroke="#333" stroke-width="2.5" fill="none" stroke-linecap="round"/>
<path d="M40 48q2-26 26-26t26 26q-10-12-26-12t-26 12z" fill="#3a3a3a"/></svg>"""


class _AvatarHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = AVATAR_SVG.encode()
        self.send_response(200)
        self.send_header("Content-Type", "image/svg+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def avatar_url() -> Iterator[str]:
    """The follower's avatar on loopback: WeChat's qlogo host is not reachable from the tests."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AvatarHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mmopen/avatar/132"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, avatar_url: str
) -> Iterator[NginxServer]:
    """Its own sandbox (the follower's profile differs from the other tests'), uWSGI with the shipped
    uwsgi.xml, nginx with the shipped site."""
    wechat = FakeWeChat(appid=TEST_APPID, secret=APP_SECRET, clock=Clock())
    wechat.add_follower(DEFAULT_FOLLOWER_OPENID, NICKNAME, headimgurl=avatar_url)
    directory = tmp_path_factory.mktemp("oauth-stack")
    nginx_port = free_port()
    with SandboxServer(wechat) as sandbox:
        env = oauth_env(redis_server, sandbox, f"http://127.0.0.1:{nginx_port}")
        uwsgi = UwsgiServer(directory / "uwsgi", env, workers=1).start()
        nginx = NginxServer(directory / "nginx", uwsgi.socket_path, http_port=nginx_port)
        try:
            yield nginx.start()
        finally:
            nginx.stop()
            uwsgi.stop()


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = find_program("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        "--lang=zh-CN",
    ):
        options.add_argument(argument)
    # A phone's pixel density and WeChat's in-app browser signature, as a follower would arrive.
    options.add_experimental_option(
        "mobileEmulation",
        {
            "deviceMetrics": {"width": WINDOW[0], "height": WINDOW[1], "pixelRatio": 2},
            "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0 Mobile Safari/537.36 MicroMessenger/8.0.50.2701(0x28003235) NetType/WIFI Language/zh_CN",
        },
    )
    service = Service(executable_path=find_program("chromedriver"), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def test_chromium_approves_on_the_authorize_page_and_sees_a_weui_styled_profile(stack, browser, tmp_path):
    browser.get(stack.url + "/oauth/login")
    approve = WebDriverWait(browser, 10).until(expected_conditions.element_to_be_clickable((By.ID, "approve")))
    assert "/connect/oauth2/authorize" in browser.current_url
    approve.click()

    nickname = WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "nickname")))
    assert browser.current_url == stack.url + "/me"
    assert nickname.text == NICKNAME
    assert browser.title == "我的微信资料"
    assert browser.find_element(By.ID, "openid").text == DEFAULT_FOLLOWER_OPENID
    assert "微信网页授权不再提供性别和地区" in browser.find_element(By.ID, "withheld").text

    # WeUI came from nginx's /static/ and applies: the logout button is WeUI's centred 184 px button.
    sheets = dict(browser.execute_script("return [...document.styleSheets].map(s => [s.href, s.cssRules.length]);"))
    assert sheets[stack.url + "/static/weui/weui.min.css"] > 500
    assert sheets[stack.url + "/static/oauth.css"] > 0
    button = browser.find_element(By.ID, "logout")
    assert button.value_of_css_property("border-radius") == "8px"
    assert button.size["width"] == 184
    # Mobile first: nothing wider than the phone.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= WINDOW[0]
    # The avatar loaded (from the follower's headimgurl), so the initial behind it is covered.
    WebDriverWait(browser, 5).until(
        lambda driver: driver.execute_script(
            "const img = document.querySelector('.avatar__image'); return img && img.complete && img.naturalWidth > 0;"
        )
    )

    screenshot = tmp_path / "oauth-profile.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("OAUTH_SCREENSHOT")
    if target:
        shutil.copy(screenshot, ROOT / target)


def test_chromium_deny_and_logout_show_weui_pages(stack, browser):
    browser.get(stack.url + "/oauth/login")
    WebDriverWait(browser, 10).until(expected_conditions.element_to_be_clickable((By.ID, "deny"))).click()
    title = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CLASS_NAME, "weui-msg__title"))
    )
    assert title.text == "你拒绝了授权"
    browser.find_element(By.ID, "primary").click()  # 重新授权
    WebDriverWait(browser, 10).until(expected_conditions.element_to_be_clickable((By.ID, "approve"))).click()
    WebDriverWait(browser, 10).until(expected_conditions.element_to_be_clickable((By.ID, "logout"))).click()
    done = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CLASS_NAME, "weui-msg__title"))
    )
    assert done.text == "已退出登录"
    browser.get(stack.url + "/me")
    WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "approve")))
    assert "/connect/oauth2/authorize" in browser.current_url
