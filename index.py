"""The web.py application: the URL map, and `application`, the WSGI callable that uWSGI loads."""

from __future__ import annotations

import sys
from collections.abc import Callable

import web

# Debug mode reloads modules on every request (about 10 times slower); production never wants it.
web.config.debug = False

import handle  # noqa: E402
import weixin.oauth.routes  # noqa: E402
from weixin.config import ConfigError, check_deadline_under_harakiri, load_settings  # noqa: E402
from weixin.logs import configure_logging, configured_secrets  # noqa: E402
from weixin.rules import RulesError  # noqa: E402

urls = (
    "/weixin", "handle.Handle",
    # For monitors: app up, Redis reachable, token age (weixin/health.py).
    "/health", "weixin.health.Health",
    # Web authorization pages (weixin/oauth/routes.py).
    "/oauth/login", "weixin.oauth.routes.Login",
    "/oauth/callback", "weixin.oauth.routes.Callback",
    "/me", "weixin.oauth.routes.Me",
    "/oauth/logout", "weixin.oauth.routes.Logout",
)


def uwsgi_harakiri_seconds() -> int:
    """The harakiri uWSGI runs this app with (0: off, or not under uWSGI); of several values the last wins, as
    in uWSGI itself."""
    try:
        import uwsgi  # only importable inside uWSGI
    except ImportError:
        return 0
    value = uwsgi.opt.get("harakiri", 0)
    if isinstance(value, list):
        value = value[-1] if value else 0
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, bool):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _after_every_fork(callback: Callable[[], None]) -> None:
    """Run `callback` in every uWSGI worker right after its fork, a respawned one too; nothing outside uWSGI."""
    try:
        from uwsgidecorators import postfork  # imports the uwsgi module, which exists only inside uWSGI
    except ImportError:
        return
    postfork(callback)


def _start() -> web.application:
    try:
        settings = load_settings()
        check_deadline_under_harakiri(settings.reply_deadline, uwsgi_harakiri_seconds())
    except ConfigError as error:
        sys.stderr.write(f"configuration error: {error}\n")
        raise SystemExit(2) from None
    configure_logging(settings.log_level, configured_secrets(settings))
    try:
        runtime = handle.configure(settings)
    except RulesError as error:
        sys.stderr.write(f"replies file error:\n{error}\n")
        raise SystemExit(2) from None
    # uWSGI forks its workers (respawned ones too) from this process's copy of the rules, read at start-up.
    _after_every_fork(runtime.replies.after_fork)
    return web.application(urls, {"handle": handle, "weixin": weixin})


app = _start()
# The middleware sends POST /weixin straight to the code Handle.POST runs (see handle.py); the rest is web.py.
application = app.wsgifunc(handle.direct_message_route)

if __name__ == "__main__":
    app.run()
