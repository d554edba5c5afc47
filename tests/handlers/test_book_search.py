"""Book search by title or author through the real stack: uWSGI with the shipped replies.yaml, the rq worker
(the search rules are `background: true`), Redis, and the sandbox as the book source (its offline catalogue
in Open Library's shape, as `make run` uses it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from devstack.processes import PROJECT_ROOT, AppServer, RedisServer, TokenServiceProcess
from sandbox.server import SandboxServer
from tests.conftest import TEST_APPID
from tests.slow_replies.conftest import (
    Worker,
    delivered_to,
    new_follower,
    send,
    text_message,
    token_daemon,
    wait_until,
    wechat,
    worker_environment,
)
from tests.wechat_requests import reply_fields

__all__ = ["token_daemon", "wechat"]


@pytest.fixture(scope="module")
def book_worker(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, wechat: SandboxServer,
                token_daemon: TokenServiceProcess) -> Iterator[Worker]:
    env = worker_environment(redis_server, wechat, BOOKS_API_BASE=wechat.url)
    process = Worker(tmp_path_factory.mktemp("worker"), env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def book_app(start_app, wechat: SandboxServer, book_worker: Worker) -> AppServer:
    return start_app(WECHAT_API_BASE=wechat.url, BOOKS_API_BASE=wechat.url, REPLY_DEADLINE="3.5")


def ask(app: AppServer, openid: str, content: str) -> dict:
    response = send(app, text_message(openid, content))
    assert response.status_code == 200
    return reply_fields(response.text)


def card_of(reply: dict) -> dict:
    assert reply["MsgType"] == "news" and reply["ArticleCount"] == "1", reply
    return reply["Articles"]["item"]


def test_a_title_search_gives_the_first_hit_then_next_then_no_more(book_app: AppServer,
                                                                   wechat: SandboxServer) -> None:
    openid = new_follower(wechat)
    first = card_of(ask(book_app, openid, "查书 浪潮之巅"))
    assert first["Title"] == "浪潮之巅"
    assert "作者：吴军" in first["Description"] and "首次出版：2011" in first["Description"]
    assert "还有 1 本" in first["Description"] and "回复「下一本」看下一本" in first["Description"]
    assert first["PicUrl"] == f"{wechat.url}/covers/b/id/9001-L.jpg"
    assert first["Url"] == f"{wechat.url}/works/OL9000001W"
    cover = requests.get(first["PicUrl"], timeout=10)  # served offline by the sandbox
    assert cover.status_code == 200 and cover.headers["Content-Type"] == "image/svg+xml"
    assert requests.get(first["Url"], timeout=10).status_code == 200

    second = card_of(ask(book_app, openid, "下一本"))
    assert second["Title"] == "浪潮之巅：第四版"
    assert "这是最后一本了" in second["Description"] and "下一本" not in second["Description"]

    last = ask(book_app, openid, "下一本")
    assert last["MsgType"] == "text" and "没有更多了" in last["Content"]
    assert delivered_to(wechat, openid) == []  # every answer was passive


def test_an_author_search_pages_through_the_authors_books(book_app: AppServer, wechat: SandboxServer) -> None:
    openid = new_follower(wechat)
    first = card_of(ask(book_app, openid, "作者 吴军"))
    assert first["Title"] == "浪潮之巅" and "第 1 本，还有 5 本" in first["Description"]
    titles = [first["Title"]]
    for _ in range(5):
        titles.append(card_of(ask(book_app, openid, "下一本"))["Title"])
    assert titles == ["浪潮之巅", "浪潮之巅：第四版", "数学之美", "文明之光", "智能时代", "见识"]
    assert "没有更多了" in ask(book_app, openid, "下一本")["Content"]


def test_a_cjk_title_search_and_each_follower_pages_on_their_own(book_app: AppServer,
                                                                 wechat: SandboxServer) -> None:
    reader, other = new_follower(wechat), new_follower(wechat)
    first = card_of(ask(book_app, reader, "书名：三体"))
    assert first["Title"] == "三体" and "作者：刘慈欣" in first["Description"] and "还有 2 本" in first["Description"]
    assert "还没有在找书" in ask(book_app, other, "下一本")["Content"]  # the other follower has no search
    assert card_of(ask(book_app, reader, "下一本"))["Title"] == "三体Ⅱ：黑暗森林"


def test_a_repeated_search_comes_from_the_cache(book_app: AppServer, wechat: SandboxServer) -> None:
    openid = new_follower(wechat)
    card_of(ask(book_app, openid, "查书 Roald Dahl"))
    calls = wechat.platform.calls("/search.json")
    again = card_of(ask(book_app, openid, "查书  roald   dahl"))
    assert again["Title"] == "Charlie and the Chocolate Factory" and "还有 2 本" in again["Description"]
    assert wechat.platform.calls("/search.json") == calls


def test_nothing_found_gets_a_text(book_app: AppServer, wechat: SandboxServer) -> None:
    reply = ask(book_app, new_follower(wechat), "查书 不存在的书名")
    assert reply["MsgType"] == "text" and "没有找到“不存在的书名”的书" in reply["Content"]


def test_an_isbn_is_found_in_the_sandbox_catalogue(book_app: AppServer, wechat: SandboxServer) -> None:
    card = card_of(ask(book_app, new_follower(wechat), "978-7-111-54742-6"))
    assert card["Title"] == "Python编程：从入门到实践" and "出版社：机械工业出版社" in card["Description"]
    assert card["PicUrl"] == f"{wechat.url}/covers/b/id/9022-L.jpg"


def test_a_source_that_times_out_gets_a_polite_text(book_app: AppServer, wechat: SandboxServer) -> None:
    """The sandbox holds /search.json past the book path's 10 s deadline: the web process answers `success` at
    its reply deadline and the worker sends the polite text as a customer-service message."""
    openid = new_follower(wechat)
    wechat.platform.set_latency("/search.json", 15)
    try:
        response = send(book_app, text_message(openid, "查书 慢书"))
        assert response.status_code == 200 and response.text == "success"
        wait_until(lambda: delivered_to(wechat, openid), 30, describe=lambda: wechat.platform.state())
    finally:
        wechat.platform.set_latency("/search.json", 0)
    (message,) = delivered_to(wechat, openid)
    assert message["msgtype"] == "text" and "书目服务暂时连不上" in message["text"]["content"]


def test_the_books_conversation_of_the_readme_passes(book_app: AppServer, wechat: SandboxServer) -> None:
    """sandbox/conversations/books.yaml, the README's offline demo, run by the simulator as `sandbox chat` does."""
    from sandbox import simulator
    from sandbox.messages import Account
    from tests.conftest import TEST_AES_KEY, TEST_TOKEN

    defaults, steps = simulator.load_conversation(PROJECT_ROOT / "sandbox" / "conversations" / "books.yaml")
    defaults["from"] = new_follower(wechat)
    results = simulator.run_conversation(book_app.url + "/weixin", steps, Account(TEST_TOKEN, TEST_APPID, TEST_AES_KEY),
                                         "safe", defaults=defaults)
    failures = {number: [str(p) for p in result.problems] for number, result in enumerate(results, 1) if not result.ok}
    assert failures == {} and len(results) == len(steps)
