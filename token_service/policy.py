"""Pure decisions of the token daemon: when to refresh, how long to back off, what each errcode
means for the operator, and whether a forced refresh is allowed now."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8))

# errcodes that mean "this credential is invalid" when an ordinary API answers them
INVALID_TOKEN_ERRCODES = frozenset({40001, 40014, 42001})

BACKOFF = "backoff"
STOP = "stop"


@dataclass(frozen=True)
class ErrorAction:
    kind: str  # BACKOFF: retry soon with growing delays; STOP: a human must act, retry rarely
    pause: float  # for STOP: seconds before the next attempt
    advice: str  # what to fix, for the one log line and `status`


_IP_WHITELIST = (
    "this server's egress IP is not in the API IP whitelist: add it in the WeChat console "
    "(设置与开发 > 基本配置 > IP白名单), then the daemon retries by itself"
)
_STOP_ERRORS: dict[int, tuple[float, str]] = {
    40164: (600, _IP_WHITELIST),
    61004: (600, _IP_WHITELIST),
    40013: (
        600,
        "WeChat says the AppID is invalid: compare WECHAT_APPID with 开发者ID(AppID) in the console "
        "(设置与开发 > 基本配置) and restart the daemon",
    ),
    40125: (
        600,
        "WeChat says the AppSecret is invalid: reset or copy the AppSecret in the console "
        "(设置与开发 > 基本配置 > AppSecret), set WECHAT_APPSECRET and restart the daemon",
    ),
    40001: (
        600,
        "WeChat rejected the AppSecret (wrong, or not this account's): check WECHAT_APPSECRET against "
        "设置与开发 > 基本配置 > AppSecret and restart the daemon",
    ),
    40243: (
        600,
        "the AppSecret is frozen: unfreeze it in the console (设置与开发 > 基本配置 > AppSecret); "
        "it takes about 10 minutes, the daemon retries by itself",
    ),
    89501: (
        300,
        "WeChat is waiting for the administrator to confirm calls from this IP: approve the request "
        "in the administrator's WeChat; the daemon retries by itself",
    ),
    89503: (
        300,
        "WeChat asks the administrator to confirm calls from this IP (risk control): approve the "
        "request sent to the administrator's WeChat; the daemon retries by itself",
    ),
    89506: (
        24 * 3600,
        "the administrator rejected this IP twice within 24 h, so WeChat blocks it for 24 h: use a "
        "whitelisted IP or wait, and ask the administrator to approve the next confirmation",
    ),
    89507: (
        3600,
        "the administrator rejected this IP within the last hour, so WeChat blocks it for 1 h: wait, "
        "and ask the administrator to approve the next confirmation",
    ),
    48001: (
        6 * 3600,
        "the account has no permission for this API (e.g. JS-SDK getticket needs a verified account); "
        "set TOKEN_JSAPI_TICKET=0 if you do not use the JS-SDK",
    ),
}
_QUOTA_ADVICE = (
    "the daily quota of the token API is used up (something else is fetching tokens with this AppID?): "
    "it resets at 00:00 Beijing time, or reset it with clear_quota "
    "(console 接口权限 > 清零, 10 times a month)"
)


def seconds_until_beijing_midnight(now: float) -> float:
    moment = datetime.fromtimestamp(now, BEIJING)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - moment).total_seconds()


def error_action(errcode: int | None, now: float, stop_pause: float | None = None) -> ErrorAction:
    """What to do after WeChat answered `errcode` (None: unreachable, timeout, garbage)."""
    if errcode == 45009:
        pause = stop_pause if stop_pause is not None else seconds_until_beijing_midnight(now) + 60
        return ErrorAction(STOP, pause, _QUOTA_ADVICE)
    if errcode in _STOP_ERRORS:
        pause, advice = _STOP_ERRORS[errcode]
        return ErrorAction(STOP, stop_pause if stop_pause is not None else pause, advice)
    if errcode == 45011:
        return ErrorAction(BACKOFF, 0, "WeChat says the token API is called too often; backing off")
    if errcode is None:
        return ErrorAction(BACKOFF, 0, "WeChat is unreachable or answered garbage; retrying with back-off")
    return ErrorAction(BACKOFF, 0, "WeChat is busy or answered an unexpected errcode; retrying with back-off")


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential back-off with jitter, so that several hosts do not retry in step."""
    return min(cap, base * (2 ** min(attempt, 30))) * rng.uniform(0.5, 1.0)


def storage_margin(remaining: float, expiry_margin: float) -> float:
    """How long before WeChat's expiry the Redis copy of a credential with `remaining` s of life ends.

    Normally `expiry_margin`. WeChat may hand out a credential with less life than that (stable_token
    answers the current token with its remaining seconds, e.g. 200 s near its end); storing nothing
    would leave consumers without any token until a fresh one comes. So a credential with less than
    twice the margin left is kept for half of its remaining life: a consumer that reads it at the
    last moment still has the other half to use it. The limit: a credential with a second left is
    kept for half a second, and the daemon must poll again quickly (refresh_time does)."""
    return min(expiry_margin, max(remaining, 0.0) / 2)


def refresh_time(
    expires_at: float,
    overlap: float,
    expiry_margin: float,
    rng: random.Random,
    now: float | None = None,
    min_delay: float = 0.0,
) -> float:
    """When to refresh a credential: inside WeChat's last-`overlap` window (a stable token only
    rotates there; a classic old token then lives to its own expiry), early enough to retry a few
    times before the Redis copy expires `expiry_margin` s before WeChat's expiry.

    Given `now`, a credential already inside that window (WeChat handed out one with little life
    left) is polled again after a quarter to a half of the life of its Redis copy (at least
    `min_delay` s, so that the same answer is not fetched in a loop), before that copy expires."""
    lead = max(overlap * rng.uniform(0.6, 0.9), expiry_margin * 1.5)
    planned = expires_at - lead
    if now is None or planned > now:
        return planned
    remaining = expires_at - now
    stored_for = remaining - storage_margin(remaining, expiry_margin)
    return now + max(min_delay, stored_for * rng.uniform(0.25, 0.5))


def forced_refresh_refusal(
    forced_times: list[float], now: float, daily_limit: int, spacing: float
) -> str | None:
    """None if a forced refresh may happen now, else why not (WeChat: 20 a day, 30 s apart)."""
    recent = [moment for moment in forced_times if now - moment < 24 * 3600]
    if len(recent) >= daily_limit:
        return f"forced refresh limit reached ({daily_limit} in 24 h)"
    if recent and now - max(recent) < spacing:
        return f"last forced refresh was {now - max(recent):.1f}s ago (minimum spacing {spacing:g}s)"
    return None
