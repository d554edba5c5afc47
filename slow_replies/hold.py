"""Hold mode: answering a slow reply through WeChat's own retries, for accounts without custom/send.

WeChat waits 5 s for an answer, then re-sends the same bytes: 3 deliveries in all, about 15 s. A delivery
that WeChat will retry waits for the result until its REPLY_DEADLINE and answers with it when it is ready;
if not, it stays without an answer until WeChat has given up on it (HOLD_SECONDS), because any answer,
`success` included, would stop the retries. The last delivery answers with the result, or with a short text
saying how to fetch it: the result is then kept for the follower (HELD_RESULT_TTL) under a keyword. The
job itself runs once: every delivery finds the same hand-off record (slow_replies/handoff.py).

Also here: which delivery mode an account is in (SLOW_REPLY_DELIVERY, and auto's switch to hold remembered in
Redis) and the follower's kept pages (the held result, then a long text's next pages, one per keyword). The
pages are a Redis list of their own beside the follower session (weixin/sessions.py), not in it: a page is up
to 2 KB of text and its XML, and the session's whole state is capped at SESSION_MAX_BYTES (4 KB by default).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import redis

log = logging.getLogger("slow_replies")

WECHAT_WAIT_SECONDS = 5.0  # WeChat's timeout for one delivery
WECHAT_DELIVERIES = 3  # the first delivery and its retries, as WeChat's documentation counts them
# A retry comes WECHAT_WAIT_SECONDS after the previous delivery was sent, give or take the network; a
# delivery that arrives this late after the first is the last, even if a delivery between was lost.
LAST_DELIVERY_AFTER_SECONDS = (WECHAT_DELIVERIES - 1) * WECHAT_WAIT_SECONDS - 1.0
# From the first delivery's arrival to the last one's deadline, beyond REPLY_DEADLINE: the retries' spacing
# plus the second the retry cache may wait on a claim (weixin/dedupe.py) and the network.
HOLD_WINDOW_SECONDS = (WECHAT_DELIVERIES - 1) * WECHAT_WAIT_SECONDS + 2.0
DELIVERY_COUNT_TTL_SECONDS = 120  # WeChat's retries are over within 20 s
CUSTOM, HOLD, AUTO = "custom", "hold", "auto"
STILL_WORKING_TEXT = "还在处理，稍后发送「{keyword}」取回"
MORE_HINT = "回复「{keyword}」继续"

# KEYS[1] the delivery counter (a hash). ARGV: now (epoch s), TTL. Returns {count, seconds since the first}.
_COUNT = """
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
if count == 1 then redis.call('HSET', KEYS[1], 'first', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local first = tonumber(redis.call('HGET', KEYS[1], 'first') or ARGV[1])
return {count, tostring(tonumber(ARGV[1]) - first)}
"""


def is_last_delivery(number: int, seconds_since_first: float) -> bool:
    """Whether a delivery is the last WeChat will send of a message: the WECHAT_DELIVERIES-th, or one that
    comes as late as the last would (the count misses a delivery that never reached us)."""
    return number >= WECHAT_DELIVERIES or seconds_since_first >= LAST_DELIVERY_AFTER_SECONDS


# Every key under wechat:slow:, which the Redis ACL users of the web process and the worker already cover
# (deploy/redis/users.acl.template); job ids start with "reply-", so these never meet a job's.
def mode_key(appid: str) -> str:
    return f"wechat:slow:delivery:{appid or '-'}"


# KEYS[1] the follower's kept pages, KEYS[2] the page one message took; ARGV[1] how long that is remembered.
# Taking a page and remembering which message took it in one step: a retry of the keyword (the passive
# answer lost on the way) gets the same page, and no page is skipped.
TAKE_PAGE_SCRIPT = """
local taken = redis.call('GET', KEYS[2])
if taken then return taken end
local page = redis.call('LPOP', KEYS[1])
if page then redis.call('SET', KEYS[2], page, 'EX', ARGV[1]) end
return page
"""
TAKEN_PAGE_TTL_SECONDS = 300  # WeChat's retries of a message come within seconds; the retry cache keeps 5 min


def kept_key(appid: str, openid: str) -> str:
    """The follower's kept pages; the openid only as a digest."""
    return f"wechat:slow:kept:{appid or '-'}:{hashlib.sha1(openid.encode('utf-8')).hexdigest()}"


def delivery_key(job_id: str) -> str:
    return f"wechat:slow:{job_id}:deliveries"


def account_mode(configured: str, client: redis.Redis, appid: str) -> str:
    """custom or hold for this account now: the configured mode, or for auto, hold once WeChat refused
    custom/send with 48001 (switch_to_hold), else custom. Redis down: custom (what auto starts with)."""
    if configured != AUTO:
        return configured
    try:
        return HOLD if client.get(mode_key(appid)) else CUSTOM
    except redis.RedisError:
        return CUSTOM


def switch_to_hold(client: redis.Redis, appid: str, why: str) -> bool:
    """Remember that this account cannot use custom/send (auto mode); logged by the first to find out only.
    True when this call made the switch."""
    if not client.set(mode_key(appid), why, nx=True):
        return False
    log.warning("SLOW_REPLY_DELIVERY=auto: WeChat refused %s with 48001 (api unauthorized): this account "
                "cannot send customer-service messages; slow replies now go through WeChat's retries (hold "
                "mode). Delete Redis key %s to try custom/send again.", why, mode_key(appid))
    return True


class Deliveries:
    """Counts the deliveries of one message (the first, then WeChat's retries)."""

    def __init__(self, client: redis.Redis) -> None:
        self._count = client.register_script(_COUNT)

    def count(self, job_id: str, now: float) -> tuple[int, float]:
        """This delivery's number and the seconds since the first arrived."""
        number, since = self._count(keys=[delivery_key(job_id)], args=[f"{now:.3f}", DELIVERY_COUNT_TTL_SECONDS])
        return int(number), float(since)


class KeptPages:
    """A follower's pages waiting to be fetched by keyword: a held result, then a long text's next pages."""

    def __init__(self, client: redis.Redis, appid: str, ttl: int) -> None:
        self.client = client
        self.appid = appid
        self.ttl = ttl

    def keep(self, openid: str, pages: Iterable[str]) -> None:
        """Keep `pages` (reply XML, in order) in place of what was kept: the newest result is the one fetched."""
        pages = list(pages)
        if not pages:
            return
        key = kept_key(self.appid, openid)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.rpush(key, *pages)
            pipe.expire(key, self.ttl)
            pipe.execute()

    def next_page(self, openid: str, message_key: str | None = None) -> str | None:
        """The next kept page (taken), or None. With `message_key` (the message's retry key), WeChat's retries
        of that message get the page it took rather than taking the next one."""
        key = kept_key(self.appid, openid)
        if message_key is None:
            value = self.client.lpop(key)
        else:
            taken = f"{key}:taken:{hashlib.sha1(message_key.encode('utf-8')).hexdigest()}"
            value = self.client.eval(TAKE_PAGE_SCRIPT, 2, key, taken, TAKEN_PAGE_TTL_SECONDS)
        if value is None:
            return None
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
