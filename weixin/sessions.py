"""Follower sessions: a small per-follower, per-account state in Redis that handlers may read and write, so
that a follower can do something in several steps (a search and then `下一本`, a chat with its history).

A handler asks for it by a parameter named `session` (`def handler(message, session)`, see
weixin/render.py's call_handler). The state is a Redis hash `wechat:session:<account>:<digest of openid>`
(no openid in a key name), loaded once when the handler starts. Writes are recorded, not sent: after the
handler returns, `SessionStore.save` applies them in ONE Lua call that merges per field, so two deliveries
of one follower running at once (two quick messages, an inline and a background handler) cannot lose each
other's writes: one writing `a` and the other `b` keep both, two appends to one list keep both items. The
same call refreshes the idle TTL and enforces the size cap (oldest list items dropped first; if the state is
still too big the writes are refused, with a log line, and the stored state stays as it was).

Values are JSON. A field holds `j<json>` for a value, or `l` followed by one JSON text per line for a list:
a JSON text without indentation has no raw newline, so Lua can append an item or drop the oldest one
without a JSON parser (cjson would re-encode the other items and change their numbers).

When Redis is down, a handler still runs: it gets an empty session whose writes are dropped with a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from weixin.messages import ACCOUNT_PATTERN

log = logging.getLogger("sessions")

DEFAULT_TTL_SECONDS = 1800
DEFAULT_MAX_BYTES = 4096
KEY_PREFIX = "wechat:session:"
_VALUE, _LIST = "j", "l"

# KEYS[1] the hash. ARGV: ttl ms, cap bytes, then ops of 4 arguments each: op, field, value, keep.
#   set   field := value (an encoded field, j... or l...)      del    field removed
#   append  list field gains the line `value`, trimmed to the last `keep` lines (keep 0: no limit)
#   clear   every field removed
# Returns {status, bytes}: status 1 written, 0 refused (too big even with every list emptied, state unchanged).
SAVE_SCRIPT = """
local key = KEYS[1]
local ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local state, touched = {}, {}
local flat = redis.call('HGETALL', key)
for i = 1, #flat, 2 do state[flat[i]] = flat[i + 1] end
local function lines(text)
  local items, start = {}, 2
  if #text < 2 then return items end
  while true do
    local stop = string.find(text, '\\n', start, true)
    if not stop then items[#items + 1] = string.sub(text, start); return items end
    items[#items + 1] = string.sub(text, start, stop - 1)
    start = stop + 1
  end
end
local function joined(items)
  if #items == 0 then return 'l' end
  return 'l' .. table.concat(items, '\\n')
end
for i = 3, #ARGV, 4 do
  local op, name, value, keep = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  if op == 'set' then
    state[name] = value; touched[name] = true
  elseif op == 'del' then
    state[name] = nil; touched[name] = true
  elseif op == 'append' then
    local current = state[name]
    local items = {}
    if current and string.sub(current, 1, 1) == 'l' then items = lines(current) end
    items[#items + 1] = value
    if keep > 0 then
      while #items > keep do table.remove(items, 1) end
    end
    state[name] = joined(items); touched[name] = true
  elseif op == 'clear' then
    for existing in pairs(state) do touched[existing] = true end
    state = {}
  end
end
local function size()
  local total = 0
  for name, value in pairs(state) do total = total + #name + #value end
  return total
end
local total = size()
while total > cap do
  -- the list with the most bytes loses its oldest item
  local longest, longest_bytes = nil, -1
  for name, value in pairs(state) do
    if string.sub(value, 1, 1) == 'l' and #value > 1 and #value > longest_bytes then
      longest, longest_bytes = name, #value
    end
  end
  if not longest then return {0, total} end
  local items = lines(state[longest])
  table.remove(items, 1)
  state[longest] = joined(items); touched[longest] = true
  total = size()
end
for name in pairs(touched) do
  if state[name] then redis.call('HSET', key, name, state[name]) else redis.call('HDEL', key, name) end
end
if redis.call('EXISTS', key) == 1 then redis.call('PEXPIRE', key, ttl) end
return {1, total}
"""


def session_key(account: str, openid: str) -> str:
    """The hash of one follower of one account; the openid only as a digest (key names show up in logs and
    monitoring), the account as the AppID or, without one, the original id (gh_...) or its digest."""
    if not ACCOUNT_PATTERN.fullmatch(account):
        account = "to-" + hashlib.sha1(account.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    digest = hashlib.sha1(openid.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KEY_PREFIX}{account}:{digest}"


def encode_value(value: Any) -> str:
    """The field text of a value: a list as one JSON line per item, anything else as one JSON text."""
    if isinstance(value, list | tuple):
        return _LIST + "\n".join(_json(item) for item in value)
    return _VALUE + _json(value)


def decode_value(text: str) -> Any:
    """The value of a field's text (the inverse of encode_value)."""
    if text.startswith(_LIST):
        return [json.loads(line) for line in text[1:].split("\n")] if len(text) > 1 else []
    return json.loads(text[1:])


def _json(value: Any) -> str:
    # Compact, one line (json escapes a newline inside a string); ensure_ascii=False keeps Chinese at 3 bytes.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Session:
    """One follower's state as a handler sees it: what was stored when the handler started, plus its own
    writes (which `SessionStore.save` applies after it returns). Values must be JSON-able; a list value is a
    list stored line by line (see `append`)."""

    key: str
    values: dict[str, Any] = field(default_factory=dict)
    # (op, field, encoded value, keep) in the order written; what the save script replays.
    writes: list[tuple[str, str, str, int]] = field(default_factory=list)
    # False when the state could not be loaded: the handler sees an empty session and its writes are dropped.
    available: bool = True

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def set(self, name: str, value: Any) -> None:
        """Store `value` (JSON-able: a TypeError here, not after the handler returned)."""
        encoded = encode_value(value)
        self.values[name] = decode_value(encoded)
        self.writes.append(("set", str(name), encoded, 0))

    __setitem__ = set

    def delete(self, name: str) -> None:
        self.values.pop(name, None)
        self.writes.append(("del", str(name), "", 0))

    __delitem__ = delete

    def append(self, name: str, value: Any, keep: int = 0) -> list[Any]:
        """Add `value` to the list `name` (a new list if it holds none), keeping its last `keep` items (0: all,
        up to the size cap, which drops the oldest first). Merged in Redis: another delivery's append to the
        same list at the same time is kept too. Returns the list as this handler now sees it."""
        if keep < 0:
            raise ValueError("keep must be 0 (no limit) or more")
        line = _json(value)
        current = self.values.get(name)
        items = list(current) if isinstance(current, list) else []
        items.append(json.loads(line))
        if keep:
            items = items[-keep:]
        self.values[name] = items
        self.writes.append(("append", str(name), line, keep))
        return items

    def clear(self) -> None:
        self.values.clear()
        self.writes.append(("clear", "", "", 0))


class SessionStore:
    """Loads and saves sessions for one account's processes: built by the App (web) and the WorkerContext
    (worker) with their Redis client and settings; handlers never build one."""

    def __init__(self, client: redis.Redis, ttl_seconds: int = DEFAULT_TTL_SECONDS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.max_bytes = max_bytes
        self._save = client.register_script(SAVE_SCRIPT)

    def load(self, account: str, openid: str) -> Session:
        """The follower's session as stored now; an empty, write-dropping one when Redis fails."""
        key = session_key(account, openid)
        try:
            stored = self.client.hgetall(key)
        except (redis.RedisError, OSError) as error:
            log.warning("session not loaded (%s); the handler gets an empty one and its writes are dropped",
                        type(error).__name__)
            return Session(key, available=False)
        values: dict[str, Any] = {}
        for raw_name, raw_value in stored.items():
            name = raw_name.decode("utf-8", "replace")
            try:
                values[name] = decode_value(raw_value.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                log.warning("session field %r is not a stored value; ignoring it", name)
        return Session(key, values)

    def save(self, session: Session) -> bool:
        """Apply the session's writes (merged per field) and refresh its TTL, in one Lua call. False when the
        writes were dropped: Redis failed, the session was never loaded, or it would exceed the cap."""
        if not session.available:
            if session.writes:
                log.warning("session unavailable: dropping %d write(s)", len(session.writes))
            return False
        arguments: list[Any] = [self.ttl_seconds * 1000, self.max_bytes]
        for op, name, value, keep in session.writes:
            arguments += [op, name, value, keep]
        try:
            status, size = self._save(keys=[session.key], args=arguments)
        except (redis.RedisError, OSError) as error:
            log.warning("session not saved (%s): dropping %d write(s)", type(error).__name__, len(session.writes))
            return False
        session.writes.clear()
        if not status:
            log.warning("session too big (%d bytes over SESSION_MAX_BYTES %d with every list emptied): "
                        "writes refused, the stored state is unchanged", size, self.max_bytes)
            return False
        return True
