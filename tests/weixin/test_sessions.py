"""Follower sessions against a real Redis: per-field merge of concurrent deliveries, TTL, cap, and how
render.call_handler hands a session to a handler (or not)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import redis
from wechatpy.messages import TextMessage

from devstack.processes import RedisServer
from weixin.config import load_settings
from weixin.render import HandlerContext, call_handler, handler_plan
from weixin.sessions import SessionStore, decode_value, encode_value, session_key

APPID = "wxsessiontest0001"
OPENID = "oSessionFollower000000000001"


def text(content: str, openid: str = OPENID) -> TextMessage:
    return TextMessage({"ToUserName": "gh_account", "FromUserName": openid, "CreateTime": "1",
                        "MsgType": "text", "Content": content, "MsgId": "1"})


@pytest.fixture()
def store(redis_client: redis.Redis) -> SessionStore:
    return SessionStore(redis_client, ttl_seconds=1800, max_bytes=4096)


@pytest.fixture()
def context(redis_client: redis.Redis, store: SessionStore) -> HandlerContext:
    settings = load_settings({"WECHAT_TOKEN": "token123", "WECHAT_APPID": APPID}, dotenv_path=Path("/dev/null"))
    return HandlerContext(settings, redis_client, store)


def test_values_round_trip_as_json_and_lists_line_by_line() -> None:
    for value in ("浪潮之巅", 3, 2.5, None, True, {"q": "吴军", "n": 1}, [], [""], ["a\nb", {"x": [1, 2]}],
                  2**63 + 1):
        assert decode_value(encode_value(value)) == value


def test_the_key_holds_a_digest_of_the_openid_never_the_openid() -> None:
    key = session_key(APPID, OPENID)
    assert key.startswith(f"wechat:session:{APPID}:") and OPENID not in key
    assert session_key("bad account!", OPENID).startswith("wechat:session:to-")


def test_two_concurrent_deliveries_writing_different_fields_keep_both(store: SessionStore) -> None:
    first, second = store.load(APPID, OPENID), store.load(APPID, OPENID)  # both start from the same state
    first.set("query", "浪潮之巅")
    second.set("position", 2)
    assert store.save(first) and store.save(second)
    assert dict(store.load(APPID, OPENID).values) == {"query": "浪潮之巅", "position": 2}


def test_two_concurrent_appends_to_one_list_keep_both_items(store: SessionStore) -> None:
    seed = store.load(APPID, OPENID)
    seed.append("history", {"role": "user", "content": "你好"})
    store.save(seed)
    first, second = store.load(APPID, OPENID), store.load(APPID, OPENID)
    first.append("history", "from first", keep=10)
    second.append("history", "from second", keep=10)
    store.save(first)
    store.save(second)
    assert store.load(APPID, OPENID)["history"] == [{"role": "user", "content": "你好"}, "from first", "from second"]


def test_append_keeps_the_last_n(store: SessionStore) -> None:
    for number in range(5):
        session = store.load(APPID, OPENID)
        assert session.append("turns", number, keep=3) == list(range(max(0, number - 2), number + 1))
        store.save(session)
    assert store.load(APPID, OPENID)["turns"] == [2, 3, 4]


def test_concurrent_handlers_through_call_handler_keep_each_others_writes(context: HandlerContext) -> None:
    both_loaded = threading.Barrier(2, timeout=10)

    def handler(message, session):
        both_loaded.wait()  # each has loaded the state before either saves
        session.set(f"field-{message.content}", message.content)
        session.append("seen", message.content)
        return "ok"

    threads = [threading.Thread(target=call_handler, args=(handler, text(word), context)) for word in ("甲", "乙")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    stored = context.sessions.load(APPID, OPENID)
    assert stored["field-甲"] == "甲" and stored["field-乙"] == "乙"
    assert sorted(stored["seen"]) == ["乙", "甲"]


def test_reads_see_the_loaded_state_plus_own_writes_and_delete_clear_apply(store: SessionStore) -> None:
    session = store.load(APPID, OPENID)
    session.set("a", 1)
    session["b"] = [1]
    store.save(session)
    session = store.load(APPID, OPENID)
    assert session.get("a") == 1 and session["b"] == [1] and session.get("missing", "x") == "x"
    session.delete("a")
    assert "a" not in session
    store.save(session)
    assert dict(store.load(APPID, OPENID).values) == {"b": [1]}
    session = store.load(APPID, OPENID)
    session.clear()
    session.set("c", "after clear")
    store.save(session)
    assert dict(store.load(APPID, OPENID).values) == {"c": "after clear"}


def test_every_save_refreshes_the_idle_ttl(store: SessionStore, redis_client: redis.Redis) -> None:
    session = store.load(APPID, OPENID)
    session.set("a", 1)
    store.save(session)
    key = session_key(APPID, OPENID)
    redis_client.expire(key, 5)  # as if the follower had been idle for most of the TTL
    store.save(store.load(APPID, OPENID))  # a handler that only read
    assert 1790 < redis_client.ttl(key) <= 1800


def test_the_cap_drops_the_oldest_list_items_first(redis_client: redis.Redis) -> None:
    store = SessionStore(redis_client, ttl_seconds=60, max_bytes=400)
    session = store.load(APPID, OPENID)
    session.set("name", "keep me")
    for number in range(40):
        session.append("history", f"turn {number:02d} " + "x" * 10)
    assert store.save(session)
    stored = store.load(APPID, OPENID)
    assert stored["name"] == "keep me"
    assert stored["history"][-1].startswith("turn 39") and not stored["history"][0].startswith("turn 00")
    assert sum(len(k) + len(v) for k, v in redis_client.hgetall(session_key(APPID, OPENID)).items()) <= 400


def test_a_state_too_big_without_lists_is_refused_and_logged(redis_client: redis.Redis,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    store = SessionStore(redis_client, ttl_seconds=60, max_bytes=300)
    session = store.load(APPID, OPENID)
    session.set("small", 1)
    store.save(session)
    session = store.load(APPID, OPENID)
    session.set("big", "字" * 200)
    with caplog.at_level(logging.WARNING, "sessions"):
        assert not store.save(session)
    assert "too big" in caplog.text
    assert dict(store.load(APPID, OPENID).values) == {"small": 1}


def test_a_plain_handler_and_a_context_handler_still_work(context: HandlerContext) -> None:
    assert call_handler(lambda message: message.content, text("hi"), context) == "hi"

    def with_context(message, context=None):
        return "context" if isinstance(context, HandlerContext) else "none"

    assert call_handler(with_context, text("hi"), context) == "context"
    assert call_handler(with_context, text("hi"), None) == "none"


def test_the_plan_follows_parameter_names() -> None:
    def one(message): ...
    def two(message, session): ...
    def three(message, context, session): ...
    def swapped(message, session, context): ...
    def keyword(message, *, session): ...

    assert (handler_plan(one).context, handler_plan(one).session) == (None, False)
    assert (handler_plan(two).context, handler_plan(two).session) == (None, True)
    assert (handler_plan(three).context, handler_plan(three).session) == ("context", True)
    assert (handler_plan(swapped).context, handler_plan(swapped).session) == ("context", True)
    assert (handler_plan(keyword).context, handler_plan(keyword).session) == (None, True)
    assert handler_plan(len).session is False


def test_a_two_step_flow_through_call_handler(context: HandlerContext) -> None:
    def handler(message, context, session):
        if message.content == "开始":
            session.set("step", 1)
            return "你叫什么名字？"
        if session.get("step") == 1:
            session.delete("step")
            return f"你好，{message.content}"
        return "发送「开始」"

    assert call_handler(handler, text("开始"), context) == "你叫什么名字？"
    assert call_handler(handler, text("小明"), context) == "你好，小明"
    assert call_handler(handler, text("小明"), context) == "发送「开始」"


def test_a_handler_that_raises_leaves_the_session_as_it_was(context: HandlerContext) -> None:
    def handler(message, session):
        session.set("half", "done")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        call_handler(handler, text("x"), context)
    assert "half" not in context.sessions.load(APPID, OPENID)


def test_redis_down_gives_an_empty_session_whose_writes_are_dropped(redis_server: RedisServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    settings = load_settings({"WECHAT_TOKEN": "token123", "WECHAT_APPID": APPID}, dotenv_path=Path("/dev/null"))
    context = HandlerContext(settings, dead, SessionStore(dead))

    def handler(message, session):
        session.set("a", 1)
        return f"{len(session)} {session.get('a')}"

    with caplog.at_level(logging.WARNING, "sessions"):
        assert call_handler(handler, text("x"), context) == "1 1"
    assert "not loaded" in caplog.text and "dropping 1 write" in caplog.text


def test_without_a_context_a_session_handler_gets_a_dropping_session() -> None:
    def handler(message, session):
        session.set("a", 1)
        return "ran"

    assert call_handler(handler, text("x"), None) == "ran"
