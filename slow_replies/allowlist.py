"""The only code a worker runs for a job: the function this project enqueues, no callbacks or webhooks, and only the
handlers that background rules of the replies file name.

rq stores a job's function as a dotted name in Redis and imports whatever it names; anyone who can write
to Redis could queue `os.system` with a command line. The worker's job class resolves a name only if it
is on the allowlist; any other job fails before anything is imported, with one ERROR line. The job's
own `handler` field (`module:function`) is checked the same way against the replies file. (Redis ACLs
keep strangers out of Redis; this keeps someone who got in from running code in the worker.)
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rq.job import Job

from slow_replies.jobs import JOB_FUNCTION
from weixin.rules import RulesError, RuleSet, current_handler_name, handler_path, load_rules

log = logging.getLogger("slow_replies")

# Every function the web process enqueues (slow_replies.jobs.enqueue); a new job type must be added here.
ALLOWED_JOB_FUNCTIONS = frozenset({JOB_FUNCTION})


class JobRefused(Exception):
    """The job names code the worker does not run."""


class AllowlistedJob(Job):
    """An rq Job that refuses to resolve a function, an instance method or a callback outside the allowlist,
    and to send webhooks."""

    # The worker's WorkerContext (slow_replies/perform.py), bound by `for_context`: the job's function gets it.
    worker_context: Any = None

    @classmethod
    def for_context(cls, context: Any) -> type[AllowlistedJob]:
        """This job class with `context` handed to every job's function (rq builds the job objects itself from
        the class it is given, so the worker's context rides on the class, not in a module global)."""
        return type(cls.__name__, (cls,), {"worker_context": context})

    @property
    def func(self) -> Any:
        name = self.func_name
        refused = name not in ALLOWED_JOB_FUNCTIONS or self.instance is not None
        if refused:
            log.error(
                "refused job %s: it names the function %r, which this worker does not run (only %s); "
                "someone queued it by writing to Redis directly",
                self.id, name, ", ".join(sorted(ALLOWED_JOB_FUNCTIONS)),
            )
        # This project sets no callbacks: a job naming one was not queued by it.
        for callback in (self._success_callback_name, self._failure_callback_name, self._stopped_callback_name):
            if callback:
                log.error("refused job %s: it names the callback %r, which this worker does not run",
                          self.id, callback)
                refused = True
        for webhook in self.webhooks:
            # rq would send the job's data to any URL a job names (from the worker's host).
            log.error("refused job %s: it names a webhook (%s), which this worker never sends", self.id,
                      urlsplit(webhook.url).hostname)
            refused = True
        if refused:
            raise JobRefused(f"job {self.id} names code that is not on the worker's allowlist")
        if self.worker_context is None:
            return super().func
        return functools.partial(super().func, context=self.worker_context)

    # Never imported, whatever a job names (rq would call them around a refused job too).
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, status: str, *, exc_string: str | None = None) -> None:
        """Never sent: this project sets no webhooks (see func)."""


def background_handlers(rules: RuleSet) -> frozenset[str]:
    """`module:function` of every handler a background rule of `rules` names."""
    paths = (handler_path(reply.value) for reply in rules.all_replies() if reply.background)
    return frozenset(path for path in paths if path)


def handlers_in(replies_file: Path) -> frozenset[str]:
    """The background handlers of the replies file as it is now (none when it is broken)."""
    try:
        return background_handlers(load_rules(replies_file))
    except RulesError:
        return frozenset()


class HandlerAllowlist:
    """The handlers a job may run: those of the replies file as the worker loaded it at start (the worker
    builds this once; each job's forked process inherits it), so a file that is broken or half saved when
    a job runs does not refuse the handlers that were valid, and those of the file as it is now."""

    def __init__(self, replies_file: Path) -> None:
        self.replies_file = replies_file
        self.at_start = handlers_in(replies_file)

    def allows(self, handler: str) -> bool:
        """True if a background rule names `handler`, in the file as loaded at start or as it is now (a rule
        added since the worker started; only a handler missing at start pays for reading the file again,
        and its handlers are imported by then). A handler under its old name (`books:lookup`) is the one
        under its new name."""
        handler = current_handler_name(handler)
        if handler in self.at_start:
            return True
        try:
            return handler in background_handlers(load_rules(self.replies_file))
        except RulesError:
            return False

