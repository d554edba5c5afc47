"""Dedupe off the request path: claim a fresh delivery in this server's memory and write the claim to Redis behind.

WeChat retries a message only when it had no answer within 5 s, so a retry arrives at least ~5 s after the
first delivery, and a first delivery arrives within about a second of its CreateTime. A delivery that is
only a moment old (`DeliveryAges.is_fresh`) therefore cannot have a predecessor anywhere: nothing needs to
be asked. It is claimed in the server's shared memory (uWSGI's cache, the Redis-down stand-in of
weixin/local_dedupe.py), and the claim, then the stored reply, are queued for Redis (`RedisWriteBehind`): a
thread of each worker process writes them in batches, one script call per batch (FLUSH_INTERVAL_SECONDS apart),
long before a retry can come, so any retry, to any worker or any host, finds them in Redis. Everything
else (an older delivery, no usable CreateTime, a worker that has not seen enough deliveries to know its
clock's offset to WeChat's) takes the synchronous path of weixin/dedupe.py, which asks Redis.

Freshness is judged on this server's clock corrected by its offset to WeChat's: a low percentile of the
recent deliveries' ages (now - CreateTime). First deliveries are most of the traffic and arrive within
a second, so the low percentile is the offset (plus the shortest transit), however wrong either clock is;
retries are a minority, and a percentile this low ignores them. Both CreateTime (the message's, a retry
repeats it) and the query's signed timestamp must be fresh: the body is not signed in plaintext mode.

Handlers (code that runs, claimed before and stored after) take the same path: the pending marker is
queued at the claim and the reply when the handler returns; the batch writes them in that order. A retry
5 s later finds the marker (still running) or the reply in Redis, as it does today.

The replay fingerprint of a fresh request is checked in the same memory and written behind too, rather
than asked of Redis: the query's timestamp is signed, so a replay of the triple is fresh only within the
same few seconds as the original; later it takes the synchronous path and meets the fingerprint in Redis.
Within those seconds a replay to the same server meets it in memory; to another server, it is caught
when the batch writes it (logged as an error, after the answer). That gap needs a signed query string
seen within seconds of WeChat sending it, and a plaintext deployment (safe mode's msg_signature covers
the body); WECHAT_REQUIRE_ENCRYPTION closes it.

The new failure mode: a worker killed between the local claim and the flush loses the claim in Redis, so a
later retry runs the rule again; a worker killed mid-request does the same today (its pending marker
names a dead process and the retry takes over). A flush that fails (Redis down) keeps its batch queued,
retried until each entry's lifetime ends, and copies it into the shared memory with its full lifetime,
where the Redis-down path looks.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

from weixin.claim_script import CLAIM_SCRIPT, claim_entry

log = logging.getLogger("dedupe")

# A first delivery is at most about 2 s old on the corrected clock (1 s transit, 1 s of whole-second
# CreateTime); WeChat's first retry comes about 5 s after it. 3 s leaves a second on each side.
FRESH_SECONDS = 3.0
# The offset estimate: the 10th percentile of this worker's last 128 delivery ages, known after 16.
AGE_SAMPLES = 128
MIN_AGE_SAMPLES = 16
AGE_PERCENTILE = 0.10
AGE_ESTIMATE_EVERY = 16  # re-sort the window once per this many deliveries, not on every one
# A CreateTime further than this from the clock is not used at all (neither judged nor sampled).
USABLE_AGE_SECONDS = 3600.0
# The local copy of a fresh claim only has to outlive the freshness window (a duplicate within it is claimed
# here, a retry after it goes to Redis): short, so that uWSGI's cache holds the claims of a busy server
# (uwsgi.xml sizes it). uWSGI counts whole seconds and the corrected age can start a little below 0.
LOCAL_SECONDS = int(FRESH_SECONDS) + 2
FLUSH_INTERVAL_SECONDS = 0.01  # a batch collects what arrives in this long; a retry comes seconds later
FLUSH_RETRY_SECONDS = 0.5  # after a failed flush (Redis down)
MAX_QUEUED = 50_000  # while Redis is down; the oldest entries go first beyond it
TEST_CLOCK_OFFSET_VARIABLE = "WECHAT_TEST_CLOCK_OFFSET"

Clock = Callable[[], float]

BATCH_ENTRIES = 500  # entries per script call: a long call would hold up Redis for every other client


def clock_from_environment(environ: Mapping[str, str]) -> Clock:
    """time.time, shifted by WECHAT_TEST_CLOCK_OFFSET seconds when set: only tests set it, to play a server
    whose clock is off WeChat's (it moves only the dedupe's view of time, not the timestamp window)."""
    raw = environ.get(TEST_CLOCK_OFFSET_VARIABLE, "")
    if not raw:
        return time.time
    offset = float(raw)
    return lambda: time.time() + offset


class DeliveryAges:
    """This process's estimate of its clock's offset to WeChat's, and the freshness test built on it."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._ages: collections.deque[float] = collections.deque(maxlen=AGE_SAMPLES)
        self._since_estimate = 0
        self._lock = threading.Lock()  # `python index.py` serves requests in threads
        self.offset: float | None = None  # None until MIN_AGE_SAMPLES deliveries were seen

    def is_fresh(self, create_time: str, timestamp: str) -> bool:
        """Record this delivery's age; True when both its CreateTime and the query's timestamp are under
        FRESH_SECONDS old on the corrected clock. False without an estimate or a usable CreateTime."""
        now = self.clock()
        try:
            created_age = now - int(create_time)
            sent_age = now - int(timestamp)
        except (TypeError, ValueError):
            return False
        if abs(created_age) > USABLE_AGE_SECONDS:
            return False
        offset = self.offset
        self._record(created_age)
        if offset is None:
            return False
        oldest, newest = max(created_age, sent_age) - offset, min(created_age, sent_age) - offset
        return oldest < FRESH_SECONDS and newest > -FRESH_SECONDS

    def _record(self, age: float) -> None:
        with self._lock:
            self._ages.append(age)
            self._since_estimate += 1
            if len(self._ages) >= MIN_AGE_SAMPLES and (
                self.offset is None or self._since_estimate >= AGE_ESTIMATE_EVERY
            ):
                ordered = sorted(self._ages)
                self.offset = ordered[int(len(ordered) * AGE_PERCENTILE)]
                self._since_estimate = 0


@dataclass(frozen=True)
class Entry:
    """One write for Redis: a claim (SET NX, with the replay fingerprint) or a stored reply (SET)."""

    key: str
    value: bytes
    expires: float  # monotonic
    claim: bool
    fingerprint_key: str = ""
    body_digest: str = ""
    fingerprint_expires: float = 0.0


class RedisWriteBehind:
    """The queue of claims and replies for Redis, and the thread of this process that writes them.

    The thread starts with the first entry of each process (uWSGI forks its workers from the master, which
    queues nothing; a thread does not survive a fork). Entries go in order, so a handler's reply always
    follows its pending marker."""

    def __init__(self, client: redis.Redis, on_failure: Callable[[list[Entry]], None]) -> None:
        self.client = client
        self.batch_sha = hashlib.sha1(CLAIM_SCRIPT.encode()).hexdigest()
        self.on_failure = on_failure  # copies a batch Redis could not take into local memory
        self._queue: collections.deque[Entry] = collections.deque()
        self._failed: list[Entry] = []  # a batch Redis did not take, first in the next one
        self._wake = threading.Event()
        self._owner_pid = 0
        self._connection: redis.connection.AbstractConnection | None = None
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self.flushed = 0  # entries written (for tests and the benchmark)

    def put(self, entry: Entry) -> None:
        if self._owner_pid != os.getpid():
            with self._start_lock:
                if self._owner_pid != os.getpid():
                    self._start()
        self._queue.append(entry)
        if len(self._queue) > MAX_QUEUED:
            self._queue.popleft()
        self._wake.set()

    def _start(self) -> None:
        self._queue.clear()  # a parent's entries are the parent's to write
        self._failed = []
        self._connection = None
        self._wake = threading.Event()
        self._flush_lock = threading.Lock()
        threading.Thread(target=self._run, name="dedupe-write-behind", daemon=True).start()
        atexit.register(self.flush)
        self._owner_pid = os.getpid()  # last: another thread's put() waits on the lock until now

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(FLUSH_INTERVAL_SECONDS)
            self._wake.clear()
            if not self.flush():
                time.sleep(FLUSH_RETRY_SECONDS)
                self._wake.set()

    def flush(self) -> bool:
        """Write everything queued; False when Redis failed (the batch stays queued, and what had not failed
        before is copied into local memory once)."""
        with self._flush_lock:
            new: list[Entry] = []
            while self._queue:
                new.append(self._queue.popleft())
            now = time.monotonic()
            batch = [entry for entry in [*self._failed, *new] if entry.expires > now]
            if not batch:
                self._failed = []
                return True
            try:
                self._write(batch, now)
            except (redis.RedisError, OSError) as error:
                if self._connection is not None:
                    self._connection.disconnect()
                if not self._failed:  # once per outage, not on every retry
                    log.warning("writing %d dedupe entries to Redis failed (%s); retrying until it answers",
                                len(batch), type(error).__name__)
                self._failed = batch[-MAX_QUEUED:]
                self.on_failure(new)
                return False
            self._failed = []
            self.flushed += len(batch)
            return True

    def _write(self, batch: list[Entry], now: float) -> None:
        if self._connection is None:
            self._connection = self.client.connection_pool.make_connection()
        chunks = [batch[start:start + BATCH_ENTRIES] for start in range(0, len(batch), BATCH_ENTRIES)]
        commands = [self._command(chunk, now) for chunk in chunks]
        replies = self._send(commands)
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            self._send([("SCRIPT", "LOAD", CLAIM_SCRIPT)])  # a restarted Redis forgot it
            replies = self._send(commands)
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            for entry, result in zip(chunk, reply, strict=True):
                if not entry.claim:
                    continue
                if result == -1:
                    log.error("a replayed query string with another body was answered before Redis saw it (%s)",
                              entry.fingerprint_key)
                elif result != 1 and result != entry.value:
                    log.warning("%s was claimed elsewhere before this claim reached Redis: handled twice", entry.key)

    def _command(self, chunk: list[Entry], now: float) -> tuple:
        keys: list[str] = []
        args: list[str | bytes | int] = []
        for entry in chunk:
            entry_keys, entry_args = claim_entry(
                entry.key, entry.value, max(1, int((entry.expires - now) * 1000)), entry.fingerprint_key,
                entry.body_digest, max(1, int(entry.fingerprint_expires - now)), store=not entry.claim,
            )
            keys += entry_keys
            args += entry_args
        return ("EVALSHA", self.batch_sha, len(keys), *keys, *args)

    def _send(self, commands: list[tuple]) -> list:
        connection = self._connection
        connection.send_packed_command(connection.pack_commands(commands))
        results = []
        for _ in commands:
            try:
                results.append(connection.read_response())
            except redis.exceptions.ResponseError as error:  # one command's error: read the others too
                results.append(error)
        return results
