"""Every Redis client the project's processes use, by what it is for: the timeouts live here and nowhere else.

Two families:
- Fail fast (the request path, the health check, the OAuth pages, a handler's cache): a request has
  seconds in all (uWSGI's harakiri, WeChat's 5 s), so short timeouts and no retries; redis-py's default
  retries alone would take seconds. Each caller degrades on a RedisError (dedupe in local memory,
  `success`, a 503 page).
- Patient (token_service, the slow_replies worker and its jobs): a daemon has time; a longer timeout
  rides out a busy or restarting Redis instead of failing a refresh or a job.

Fresh after fork: a client is a connection pool that opens connections on first use, so building one
before
uWSGI forks (index.py builds the App in the master) or before rq forks a job's process is safe: redis-py's
pool compares its pid on every checkout and starts over in a forked child, never touching the parent's
sockets. Code that takes connections out of the pool for itself (weixin/dedupe.py's ScriptRunner) must
check the pid too; it does.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# The request path: a local Redis accepts a connection at once; one still pending after a quarter
# second means Redis is not there.
REQUEST_CONNECT_SECONDS = 0.25
REQUEST_SECONDS = 0.5
# A connection idle this long is pinged before use, so one left broken by a Redis restart fails early.
REQUEST_HEALTH_CHECK_SECONDS = 30
# A monitor must get its answer quickly even when Redis hangs: one try, half a second.
HEALTH_SECONDS = 0.5
# A handler's cache (the ISBN lookups): a miss costs a call to the book source, not a failed reply.
CACHE_CONNECT_SECONDS = 1.0
CACHE_SECONDS = 2.0
# token_service (daemon and command-line tools, consumer scripts).
DAEMON_SECONDS = 5.0
# The slow_replies worker: rq blocks on its queue for minutes, so no read timeout, only a connect bound.
WORKER_CONNECT_SECONDS = 5.0
# A background job's own commands (hand-off, delivery lock): generous, a job is not in a hurry.
JOB_CONNECT_SECONDS = 2.0
JOB_SECONDS = 10.0
# A web process blocked on a background result waits this much past its deadline before the read times out.
WAITER_SLACK_SECONDS = 0.5


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def request_path(url: str) -> redis.Redis:
    """The web process's client for the retry cache, the background hand-off and the OAuth sessions."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REQUEST_CONNECT_SECONDS,
        socket_timeout=REQUEST_SECONDS,
        retry=_no_retry(),
        health_check_interval=REQUEST_HEALTH_CHECK_SECONDS,
    )


def result_waiter(url: str, deadline_seconds: float) -> redis.Redis:
    """The web process's client that blocks for a background result for up to `deadline_seconds`."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REQUEST_CONNECT_SECONDS,
        socket_timeout=deadline_seconds + WAITER_SLACK_SECONDS,
        retry=_no_retry(),
    )


def health(url: str) -> redis.Redis:
    """GET /health's client: fails within HEALTH_SECONDS."""
    return redis.Redis.from_url(
        url, socket_timeout=HEALTH_SECONDS, socket_connect_timeout=HEALTH_SECONDS, retry=_no_retry()
    )


def cache(url: str) -> redis.Redis:
    """A handler's cache (handlers/books.py): a little more patient than the request path, still bounded."""
    return redis.Redis.from_url(url, socket_connect_timeout=CACHE_CONNECT_SECONDS, socket_timeout=CACHE_SECONDS)


def daemon(url: str) -> redis.Redis:
    """token_service's daemon, its command-line tools and consumer scripts."""
    return redis.Redis.from_url(url, socket_timeout=DAEMON_SECONDS, socket_connect_timeout=DAEMON_SECONDS)


def worker(url: str) -> redis.Redis:
    """The rq worker's own connection (it blocks on the queue: no read timeout)."""
    return redis.Redis.from_url(url, socket_connect_timeout=WORKER_CONNECT_SECONDS)


def job(url: str) -> redis.Redis:
    """A background job's commands (slow_replies/perform.py), in the process rq forks for it."""
    return redis.Redis.from_url(url, socket_connect_timeout=JOB_CONNECT_SECONDS, socket_timeout=JOB_SECONDS)
