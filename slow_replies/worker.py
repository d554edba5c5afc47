"""The worker process: an rq worker on the background-reply queue (`python -m slow_replies worker`)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable

from rq import Worker
from rq.serializers import JSONSerializer

from slow_replies.allowlist import AllowlistedJob
from slow_replies.jobs import QUEUE_NAME
from slow_replies.perform import WorkerContext
from weixin import redis_clients
from weixin.config import Settings
from weixin.render import HandlerContext
from weixin.rules import RulesError, load_rules

log = logging.getLogger("slow_replies")

# How often the worker looks for jobs whose worker died (rq re-runs them after their heartbeat expires,
# about 90 s); rq's default is 10 minutes.
MAINTENANCE_INTERVAL_SECONDS = 60


def preload(settings: Settings) -> int:
    """Import the job's code and the replies file's handlers once, so that each job's forked process starts
    with them loaded (importing them per job costs about 0.2 s). Returns the number of background rules."""
    importlib.import_module("slow_replies.perform")
    try:
        rules = load_rules(settings.replies_file)
    except RulesError as error:
        log.warning("replies file not loaded (%s); handlers will be imported per job", error)
        return 0
    return sum(1 for reply in rules.all_replies() if reply.background)


def prepare_handlers(handler_names: Iterable[str], handler_context: HandlerContext) -> None:
    """Call `prepare_process(handler_context)` of each named handler's module that has one, once, before rq
    forks a process per job: what it builds there (the AI handler's HTTP client) each job inherits instead of
    building it again. A failing one is logged; its handler then builds what it needs per job."""
    modules = sorted({name.partition(":")[0] for name in handler_names})
    for module_name in modules:
        try:
            prepare = getattr(importlib.import_module(module_name), "prepare_process", None)
            if callable(prepare):
                prepare(handler_context)
        except Exception as error:
            log.warning("could not prepare the handlers of %s (%s: %s); they will set up per job",
                        module_name, type(error).__name__, error)


def run_worker(settings: Settings, burst: bool = False) -> int:
    """Work until SIGTERM (warm shutdown: the running job finishes first) or, with `burst`, an empty queue."""
    client = redis_clients.worker(settings.redis_url)
    background_rules = preload(settings)
    # Built once here; rq forks a process per job, which inherits it (with the handler allowlist as loaded now).
    context = WorkerContext.build(settings)
    prepare_handlers(context.allowlist.at_start, context.handler_context)
    log.info("slow_replies worker: queue %s, %d background rules in %s", QUEUE_NAME, background_rules,
             settings.replies_file)
    worker = Worker(
        [QUEUE_NAME],  # by name, so that the worker builds the queue with the allowlisted job class
        connection=client,
        serializer=JSONSerializer,
        job_class=AllowlistedJob.for_context(context),
        maintenance_interval=MAINTENANCE_INTERVAL_SECONDS,
    )
    worker.work(burst=burst, logging_level=settings.log_level, with_scheduler=False)
    return 0
