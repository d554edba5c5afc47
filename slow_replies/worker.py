"""The worker process: an rq worker on the background-reply queue (`python -m slow_replies worker`)."""

from __future__ import annotations

import importlib
import logging

from rq import Worker
from rq.serializers import JSONSerializer

from slow_replies.allowlist import AllowlistedJob
from slow_replies.jobs import QUEUE_NAME
from slow_replies.perform import WorkerContext
from weixin import redis_clients
from weixin.config import Settings
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


def run_worker(settings: Settings, burst: bool = False) -> int:
    """Work until SIGTERM (warm shutdown: the running job finishes first) or, with `burst`, an empty queue."""
    client = redis_clients.worker(settings.redis_url)
    background_rules = preload(settings)
    # Built once here; rq forks a process per job, which inherits it (with the handler allowlist as loaded now).
    context = WorkerContext.build(settings)
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
