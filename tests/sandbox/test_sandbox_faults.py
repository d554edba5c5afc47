"""Fault injection in the sandbox: an errcode for the next N calls, added latency, the IP whitelist."""

from __future__ import annotations

import threading
import time

import pytest
import requests


def test_injected_error_answers_the_next_n_calls_then_normal_service(api, wechat):
    wechat.inject_error("/cgi-bin/token", 45009, count=2)
    assert api.classic()["errcode"] == 45009
    assert api.classic()["errcode"] == 45009
    assert "access_token" in api.classic()
    assert wechat.calls("/cgi-bin/token") == 3


def test_injected_error_comes_before_any_other_check(api, wechat):
    wechat.inject_error("/cgi-bin/getcallbackip", -1)
    answer = api.get("/cgi-bin/getcallbackip")  # no token at all: would be 41001
    assert answer["errcode"] == -1
    assert api.get("/cgi-bin/getcallbackip")["errcode"] == 41001


def test_injected_errors_queue_per_endpoint(api, wechat):
    token = api.classic_token()
    wechat.inject_error("/cgi-bin/getcallbackip", 40001)
    wechat.inject_error("/cgi-bin/getcallbackip", 42001)
    assert api.errcode_with(token) == 40001
    assert api.stable()["access_token"]  # another endpoint is not affected
    assert api.errcode_with(token) == 42001
    assert api.errcode_with(token) == 0


def test_injected_error_count_must_be_positive(wechat):
    with pytest.raises(ValueError):
        wechat.inject_error("/cgi-bin/token", 40001, count=0)


def test_latency_delays_the_endpoint(api, wechat):
    token = api.classic_token()
    wechat.set_latency("/cgi-bin/getcallbackip", 0.3)
    started = time.monotonic()
    assert api.errcode_with(token) == 0
    assert time.monotonic() - started >= 0.3
    wechat.set_latency("/cgi-bin/getcallbackip", 0)
    assert wechat.state()["latency"] == {}


def test_star_latency_delays_every_api(api, wechat):
    wechat.set_latency("*", 0.2)
    started = time.monotonic()
    api.classic()
    api.stable()
    assert time.monotonic() - started >= 0.4


def test_a_slow_endpoint_does_not_hold_up_the_others(api, wechat, monkeypatch):
    """Latency is slept outside the platform's lock: a fast call finishes while a slow one waits."""
    token = api.classic_token()
    wechat.set_latency("/cgi-bin/getcallbackip", 1.5)
    slow_arrived = threading.Event()
    handle = wechat.handle

    def noting_the_slow_call(method, path, *args, **kwargs):
        if path == "/cgi-bin/getcallbackip":
            slow_arrived.set()
        return handle(method, path, *args, **kwargs)

    monkeypatch.setattr(wechat, "handle", noting_the_slow_call)
    slow = threading.Thread(target=requests.get, args=(api.base_url + "/cgi-bin/getcallbackip",),
                            kwargs={"params": {"access_token": token}, "timeout": 10})
    slow.start()
    assert slow_arrived.wait(10)  # the slow call is in the platform (sleeping its latency) before the fast one
    fresh = api.stable()
    assert "access_token" in fresh
    assert slow.is_alive()
    slow.join(10)


def test_whitelist_off_answers_40164_on_both_token_endpoints(api, wechat):
    wechat.set_ip_whitelisted(False)
    classic = api.classic()
    assert classic["errcode"] == 40164
    assert "not in whitelist" in classic["errmsg"] and "127.0.0.1" in classic["errmsg"]
    assert api.stable()["errcode"] == 40164
    wechat.set_ip_whitelisted(True)
    assert "access_token" in api.classic()


def test_whitelist_does_not_hide_a_wrong_appid(api, wechat):
    wechat.set_ip_whitelisted(False)
    assert api.classic(appid="wx0000000000000bad")["errcode"] == 40013


def test_whitelist_does_not_affect_apis_with_a_valid_token(api, wechat):
    token = api.classic_token()
    wechat.set_ip_whitelisted(False)
    assert api.errcode_with(token) == 0


def test_call_counts_count_every_call_including_errors(api, wechat):
    api.classic()
    api.classic(secret="wrong")
    api.get("/cgi-bin/getcallbackip")
    api.get("/no/such/path")
    counts = wechat.call_counts()
    assert counts["/cgi-bin/token"] == 2
    assert counts["/cgi-bin/getcallbackip"] == 1
    assert counts["/no/such/path"] == 1
    assert wechat.calls("/cgi-bin/stable_token") == 0


def test_reset_forgets_tokens_faults_followers_and_counts(api, wechat):
    token = api.classic_token()
    wechat.inject_error("/cgi-bin/token", 40013, count=5)
    wechat.set_ip_whitelisted(False)
    wechat.add_follower("oResetFollower000000000000001", "小王")
    wechat.reset()
    assert wechat.call_counts() == {}
    assert api.errcode_with(token) == 40001
    assert "access_token" in api.classic()
    assert [follower["openid"] for follower in wechat.state()["followers"]] == ["o6_bmjrPTlm6_2sgVt7hMZOPfL2M"]
