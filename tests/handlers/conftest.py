"""The ISBN tests run the app, the worker and the book source that the slow_replies tests start."""

from tests.slow_replies.conftest import app, book_source, token_daemon, wechat, worker

__all__ = ["app", "book_source", "token_daemon", "wechat", "worker"]
