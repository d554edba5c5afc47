"""The hand-off between the web process and the worker, kept in Redis: exactly one of "answered passively"
and "sent with custom/send" happens, and a send is attempted at most once.

One hash per job, `wechat:slow:<job id>`, whose `state` moves only through these Lua compare-and-sets:

    waiting --(worker: result ready)--> ready --(web: took it in time)--> passive
    waiting --(web: deadline passed)--> abandoned --(worker: result ready)--> sending --> sent | failed
                                        ready --(worker: deadline passed, web silent)--> sending --> ...
    (a result of "say nothing" ends in `nothing` instead of `sending`)

A job created in hold mode (`delivery` hold: slow_replies/hold.py) has the same states, but where a custom job
goes to `sending` it goes to `kept`: the worker keeps the result for the follower's keyword. Its deadline is
the last delivery's, and a passive reply may carry `more` pages (a long text) that the web process keeps.

`sending` is written before the HTTP call, so a worker that dies during it leaves `sending` behind and a
re-run of the job does not send again (at most once; it logs that it cannot tell).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

STATE_TTL_SECONDS = 3 * 86400  # longer than the 48-hour customer-service window a late job could still use
SIGNAL_TTL_SECONDS = 60

WAITING, READY, ABANDONED, PASSIVE = "waiting", "ready", "abandoned", "passive"
SENDING, SENT, FAILED, NOTHING, KEPT = "sending", "sent", "failed", "nothing", "kept"
FINISHED = frozenset({PASSIVE, SENT, FAILED, NOTHING, KEPT})

# KEYS[1] the job hash. ARGV: deadline (epoch s), rule, TTL, delivery (custom or hold). 1 if created, 0 if the
# job already exists.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'waiting', 'deadline', ARGV[1], 'rule', ARGV[2], 'delivery', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# The web process, on a wake-up (ARGV[1] = "0") or at its deadline (ARGV[1] = "1"). KEYS[2] the list that
# tells the worker the web took the result. Returns {state, passive reply XML or "", more pages (JSON) or ""}.
_TAKE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'ready' then
  redis.call('HSET', KEYS[1], 'state', 'passive')
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return {'passive', redis.call('HGET', KEYS[1], 'xml') or '', redis.call('HGET', KEYS[1], 'more') or ''}
end
if state == 'waiting' and ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'abandoned')
  return {'abandoned', '', ''}
end
return {state or 'missing', '', ''}
"""

# The worker, with the handler's result. KEYS[2] the list that wakes the waiting web process.
# ARGV: passive XML ("" = nothing), custom/send body ("" = nothing), state TTL, signal TTL, more pages (JSON).
# Returns the new state (ready, sending, kept, nothing) or, if the result came too late to matter, the current one.
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'waiting' and state ~= 'abandoned' then return state end
redis.call('HSET', KEYS[1], 'xml', ARGV[1], 'custom', ARGV[2], 'more', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if state == 'abandoned' then
  local next_state = (ARGV[2] == '') and 'nothing' or 'sending'
  if redis.call('HGET', KEYS[1], 'delivery') == 'hold' then
    next_state = (ARGV[1] == '') and 'nothing' or 'kept'
  end
  redis.call('HSET', KEYS[1], 'state', next_state)
  return next_state
end
redis.call('HSET', KEYS[1], 'state', 'ready')
redis.call('RPUSH', KEYS[2], '1')
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 'ready'
"""

# The worker, once the web process had its chance: claim the send. Returns sending, nothing, or the state.
_CLAIM_SEND = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'ready' then return state or 'missing' end
local next_state = (redis.call('HGET', KEYS[1], 'custom') == '') and 'nothing' or 'sending'
if redis.call('HGET', KEYS[1], 'delivery') == 'hold' then
  next_state = (redis.call('HGET', KEYS[1], 'xml') == '') and 'nothing' or 'kept'
end
redis.call('HSET', KEYS[1], 'state', next_state)
return next_state
"""


def job_key(job_id: str) -> str:
    return f"wechat:slow:{job_id}"


@dataclass(frozen=True)
class Taken:
    state: str
    xml: str | None = None  # for `passive`: the reply XML, or None for "say nothing"
    more: tuple[str, ...] = ()  # for `passive`: a long text's next pages (reply XML), to keep for the follower


def _text(value: bytes | str | None) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else (value or "")


class HandOff:
    """The compare-and-sets on one Redis; `wait_client` must allow blocking reads as long as the waits."""

    def __init__(self, client: redis.Redis, wait_client: redis.Redis | None = None) -> None:
        self.client = client
        self.wait_client = wait_client or client
        self._create = client.register_script(_CREATE)
        self._take = client.register_script(_TAKE)
        self._finish = client.register_script(_FINISH)
        self._claim_send = client.register_script(_CLAIM_SEND)

    # --- the web process --------------------------------------------------------------------

    def create(self, job_id: str, deadline: float, rule: str, delivery: str = "custom") -> bool:
        """Start the job's record as `waiting`; False if it exists (a retry of a message already queued)."""
        return bool(self._create(keys=[job_key(job_id)], args=[f"{deadline:.3f}", rule, STATE_TTL_SECONDS, delivery]))

    def wait_for_result(self, job_id: str, seconds: float) -> bool:
        """Block until the worker says a result is ready (True) or `seconds` pass (False)."""
        if seconds <= 0:
            return False
        return self.wait_client.blpop([job_key(job_id) + ":ready"], timeout=seconds) is not None

    def take(self, job_id: str, final: bool) -> Taken:
        """Take a ready result as the passive reply; with `final` (the deadline), leave it to the worker."""
        state, xml, more = self._take(
            keys=[job_key(job_id), job_key(job_id) + ":taken"], args=["1" if final else "0", SIGNAL_TTL_SECONDS]
        )
        state, xml, more = _text(state), _text(xml), _text(more)
        if state != PASSIVE:
            return Taken(state)
        return Taken(state, xml or None, tuple(json.loads(more)) if more else ())

    # --- the worker -------------------------------------------------------------------------

    def state(self, job_id: str) -> str | None:
        return _text(self.client.hget(job_key(job_id), "state")) or None

    def finish(self, job_id: str, xml: str | None, custom_body: str | None, more: tuple[str, ...] = ()) -> str:
        """Store the result: `ready` (the web may still take it), `sending` (ours to send), `kept` (hold mode:
        ours to keep for the keyword), `nothing`, or a state showing the job was finished before. `more`: a
        long text's pages after the passive one."""
        keys = [job_key(job_id), job_key(job_id) + ":ready"]
        return _text(self._finish(keys=keys, args=[xml or "", custom_body or "", STATE_TTL_SECONDS,
                                                   SIGNAL_TTL_SECONDS, json.dumps(list(more)) if more else ""]))

    def result_pages(self, job_id: str) -> list[str]:
        """The result as reply XML pages (the passive reply, then `more`), for a job whose result is kept."""
        xml, more = self.client.hmget(job_key(job_id), ["xml", "more"])
        xml, more = _text(xml), _text(more)
        return ([xml] if xml else []) + (json.loads(more) if more else [])

    def delivery(self, job_id: str) -> str:
        return _text(self.client.hget(job_key(job_id), "delivery")) or "custom"

    def wait_until_taken(self, job_id: str, seconds: float) -> bool:
        """Give the web process until its deadline to take the result (True if it did)."""
        if seconds <= 0:
            return False
        return self.wait_client.blpop([job_key(job_id) + ":taken"], timeout=seconds) is not None

    def claim_send(self, job_id: str) -> str:
        return _text(self._claim_send(keys=[job_key(job_id)], args=[]))

    def custom_body(self, job_id: str) -> str:
        return _text(self.client.hget(job_key(job_id), "custom"))

    def mark(self, job_id: str, state: str, detail: str = "") -> None:
        """Record how a send we own (`sending`) ended: sent or failed."""
        self.client.hset(job_key(job_id), mapping={"state": state, "detail": detail})
