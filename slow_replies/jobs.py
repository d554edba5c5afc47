"""What a background-reply job is, its id, and the rq queue it goes through (JSON-serialized, no pickle)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

QUEUE_NAME = "wechat-slow-replies"
JOB_FUNCTION = "slow_replies.perform.perform_background_reply"
# The handler (a book source times out after 8 s), waiting for the web process (< 4 s) and the
# customer-service call with its bounded retries fit well inside this.
JOB_TIMEOUT_SECONDS = 120
# A queued job older than this is dropped: custom/send only works 48 h after the follower's message.
QUEUED_TTL_SECONDS = 48 * 3600
RESULT_TTL_SECONDS = 600
FAILURE_TTL_SECONDS = 7 * 86400
# rq re-runs a job whose worker died (after its heartbeat expires); the hand-off state makes that safe.
CRASH_RETRIES = 2


@dataclass(frozen=True)
class JobSpec:
    """One message to answer in the background: everything the worker needs, as JSON."""

    job_id: str
    handler: str  # module:function
    fields: dict[str, Any]  # the message's fields (decrypted), as the web process parsed them
    deadline: float  # epoch seconds when the web process stops waiting and answers `success`
    rule: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        return cls(str(data["job_id"]), str(data["handler"]), dict(data["fields"]), float(data["deadline"]),
                   str(data.get("rule", "-")))


def job_id_for(retry_key: str) -> str:
    """The same id for every delivery of one message (the dedupe key), so a retry cannot queue it twice."""
    return "reply-" + hashlib.sha1(retry_key.encode("utf-8")).hexdigest()


def make_queue(client: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=client, serializer=JSONSerializer)


def enqueue(queue: Queue, spec: JobSpec) -> bool:
    """Queue the job; False if a job with this id is already there (queued, running or just finished)."""
    try:
        queue.enqueue_call(
            JOB_FUNCTION,
            args=(spec.to_json(),),
            job_id=spec.job_id,
            unique=True,
            timeout=JOB_TIMEOUT_SECONDS,
            ttl=QUEUED_TTL_SECONDS,
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=FAILURE_TTL_SECONDS,
            retry=Retry(max=CRASH_RETRIES),
            # rq logs the description; the default would be the arguments, i.e. the follower's words.
            description=f"background reply {spec.rule}",
        )
    except DuplicateJobError:
        return False
    return True
