"""The App: everything the web process needs to answer a request, built once by its entry point.

Like Flask's application object, there is one App per process (per account, once a deployment serves
several), built by index.py at start-up and passed explicitly: to `handle.respond_to_message(environ,
app)` by the direct POST route, and to web.py's views through `web.ctx.app`, which a loadhook in
index.py sets for every request. No module keeps a copy: a test, a benchmark or a second account builds
its own App from its own Settings.

It holds the settings, the Redis clients (weixin/redis_clients.py), the live rules (hot-reloaded), the
retry cache, the AES key, the rate limit of the plaintext warning, the background-reply hand-off, the
OAuth pages' runtime, the health check's client and what handlers get as their context.

uWSGI builds it in the master and forks the workers from it: Redis clients open their connections in each
worker on first use (see weixin/redis_clients.py), and `after_fork` restarts what a fork does not carry
over (the rules' reload thread). The other processes build their own context: token_service's daemon
and CLI (token_service/__main__.py), the worker (slow_replies/perform.py's WorkerContext).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from slow_replies.answer import BackgroundReplies
from weixin import redis_clients
from weixin.config import Settings
from weixin.crypto import aes_key_from_encoding_key
from weixin.dedupe import RetryCache
from weixin.local_dedupe import local_claims
from weixin.logs import RateLimit
from weixin.oauth import routes as oauth_routes
from weixin.render import HandlerContext
from weixin.rules import RELOAD_WAIT_SECONDS, LiveRules
from weixin.sessions import SessionStore
from weixin.write_behind import Clock, DeliveryAges

PLAINTEXT_WARNING_SECONDS = 60.0  # a console left in plaintext mode would otherwise log on every push


@dataclass
class App:
    """One account's web process: see the module's docstring."""

    settings: Settings
    redis: redis.Redis  # the request path's client (fail fast): retry cache, OAuth sessions
    rules: LiveRules  # the replies file, reloaded when it changes
    retry_cache: RetryCache
    aes_key: bytes | None  # None: no EncodingAESKey configured
    background: BackgroundReplies
    health_redis: redis.Redis
    oauth: oauth_routes.Runtime
    handler_context: HandlerContext
    # Which deliveries are fresh enough to claim locally and write behind (weixin/write_behind.py).
    delivery_ages: DeliveryAges = field(default_factory=DeliveryAges)
    plaintext_warning: RateLimit = field(default_factory=lambda: RateLimit(PLAINTEXT_WARNING_SECONDS))

    @classmethod
    def build(cls, settings: Settings, background_reload: bool = True, clock: Clock = time.time) -> App:
        """Load the rules (an invalid replies file raises RulesError: it stops start-up) and make the clients
        (none connects yet). `background_reload`: reload the rules in a thread (the server) rather than in
        the request that notices a change (tests, scripts). `clock`: the dedupe's view of the time (tests
        shift it)."""
        client = redis_clients.request_path(settings.redis_url)
        return cls(
            settings=settings,
            redis=client,
            rules=LiveRules(settings.replies_file, background=background_reload, reload_wait=RELOAD_WAIT_SECONDS),
            retry_cache=RetryCache(client, fallback=local_claims()),
            aes_key=aes_key_from_encoding_key(settings.encoding_aes_key) if settings.encoding_aes_key else None,
            background=BackgroundReplies(settings),
            health_redis=redis_clients.health(settings.redis_url),
            oauth=oauth_routes.build_runtime(settings, client),
            handler_context=HandlerContext(settings, redis_clients.cache(settings.redis_url),
                                           SessionStore(client, settings.session_ttl, settings.session_max_bytes)),
            delivery_ages=DeliveryAges(clock),
        )

    def after_fork(self) -> None:
        """In each uWSGI worker right after its fork (index.py): the rules as they are now (a fork carries no
        thread of the master's)."""
        self.rules.after_fork()
