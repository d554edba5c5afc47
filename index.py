"""The web process's entry point: builds the App (weixin/app.py), maps the URLs, and makes `application`, the
WSGI callable that uWSGI loads."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import web

# Debug mode reloads modules on every request (about 10 times slower); production never wants it.
web.config.debug = False

import handle  # noqa: E402
import weixin.oauth.routes  # noqa: E402
from weixin.app import App  # noqa: E402
from weixin.config import ConfigError, check_deadline_under_harakiri, load_settings  # noqa: E402
from weixin.logs import configure_logging, configured_secrets  # noqa: E402
from weixin.rules import RulesError  # noqa: E402
from weixin.write_behind import clock_from_environment  # noqa: E402

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


def build_app() -> App:
    """The App from the environment; a configuration or replies-file error stops start-up (exit 2)."""
    try:
        settings = load_settings()
        check_deadline_under_harakiri(settings.reply_deadline, uwsgi_harakiri_seconds(), settings.slow_reply_delivery)
    except ConfigError as error:
        sys.stderr.write(f"configuration error: {error}\n")
        raise SystemExit(2) from None
    configure_logging(settings.log_level, configured_secrets(settings))
    try:
        app = App.build(settings, clock=clock_from_environment(os.environ))
    except RulesError as error:
        sys.stderr.write(f"replies file error:\n{error}\n")
        raise SystemExit(2) from None
    # uWSGI forks its workers (respawned ones too) from this process's copy of the rules, read at start-up.
    _after_every_fork(app.after_fork)
    return app


def web_py_application(app: App) -> web.application:
    """web.py's application for `app`. Its views (handle.Handle, weixin.health.Health, the OAuth pages) are
    classes web.py instantiates itself, so they cannot be handed the App: a loadhook puts it in `web.ctx.app`
    at the start of every request (web.py clears `web.ctx` between requests), the way Flask's application
    context makes `current_app` the app that is serving."""
    web_py_app = web.application(urls, {"handle": handle, "weixin": weixin})

    def set_app() -> None:
        web.ctx.app = app

    web_py_app.add_processor(web.loadhook(set_app))
    return web_py_app


app = build_app()
web_py_app = web_py_application(app)
# The middleware sends POST /weixin straight to the code Handle.POST runs (see handle.py); the rest is web.py.
application = handle.direct_message_route(web_py_app.wsgifunc(), app)

if __name__ == "__main__":
    web_py_app.run()
