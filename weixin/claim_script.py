"""The one Lua script that claims messages in Redis, for the synchronous claim (weixin/dedupe.py, one entry)
and the write-behind batches (weixin/write_behind.py, many): one place for what a claim means.

Per entry, KEYS: the message key and the replay fingerprint's key (the message key again when there is
none: a Redis ACL checks every key named). ARGV: kind ("c" a claim; "s" a stored reply, written as is),
value (the pending marker or the finished reply), TTL (ms), body digest ("" = no fingerprint), fingerprint
TTL (s). Returns a list, per entry: 1 (claimed, or stored), -1 (the fingerprint was seen with another body:
a replayed query string), else the message key's current value (a stored reply or a pending marker; 0 when
it vanished in between).
"""

from __future__ import annotations

CLAIM_SCRIPT = """
local results = {}
for i = 1, #KEYS / 2 do
  local key, fingerprint = KEYS[2 * i - 1], KEYS[2 * i]
  local at = (i - 1) * 5
  local value, ttl = ARGV[at + 2], ARGV[at + 3]
  local result = 1
  if ARGV[at + 1] == 's' then
    redis.call('SET', key, value, 'PX', ttl)
  else
    if ARGV[at + 4] ~= '' then
      local seen = redis.call('GET', fingerprint)
      if seen and seen ~= ARGV[at + 4] then result = -1 end
      if not seen then redis.call('SET', fingerprint, ARGV[at + 4], 'EX', ARGV[at + 5]) end
    end
    if result == 1 and not redis.call('SET', key, value, 'NX', 'PX', ttl) then
      result = redis.call('GET', key) or 0
    end
  end
  results[i] = result
end
return results
"""


def claim_entry(key: str, value: bytes, ttl_ms: int, fingerprint_key: str = "", body_digest: str = "",
                fingerprint_ttl: int = 0, store: bool = False) -> tuple[list[str], list[str | bytes | int]]:
    """One entry's KEYS and ARGV for CLAIM_SCRIPT."""
    keys = [key, fingerprint_key or key]
    if store:
        return keys, ["s", value, ttl_ms, "", 0]
    return keys, ["c", value, ttl_ms, body_digest, fingerprint_ttl if body_digest else 0]
