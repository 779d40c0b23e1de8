"""The Lua scripts of the Redis backend: each runs atomically on the server.

Keys of one session (``P`` is the prefix, ``S`` the session id)::

    P:{S}:rec      hash: epoch, seq (last assigned), bytes (retained), lost (last seq trimmed)
    P:{S}:ev       stream of the retained events; entry id ``<seq>-0``; fields t (type),
                   d (data text), x (expiry, Redis ms; 0 none), l (TTL as given), b (size)
    P:{S}:n:<N>    "<epoch>-<seq>" of the publish with nonce N, kept ``NONCE_TTL_MS``
    P:notify:<k>   shard k of the notification stream: one entry (s=session) per publish,
                   (s=session, c=1) per close; trimmed to about ``notify_maxlen`` entries

Numbers leave Lua through ``string.format('%d', n)``: ``tostring`` of a large integer gives
``1.7962248321083e+15``.
"""

from __future__ import annotations

from typing import Final

NONCE_TTL_MS: Final = 120_000
"""How long a publish's outcome is remembered by its nonce: longer than any retry loop."""

TRIM_STEPS: Final = 64
"""Most events one publish removes from the front (count, bytes, expiry)."""

PUBLISH: Final = f"""
local rec, ev, nonce, notify = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local done = redis.call('GET', nonce)
if done then return done end
local epoch = redis.call('HGET', rec, 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', ev)
  redis.call('HSET', rec, 'epoch', epoch, 'seq', 0, 'bytes', 0, 'lost', 0)
end
local seq = redis.call('HINCRBY', rec, 'seq', 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
local expires = 0
if ttl > 0 then expires = now + ttl end
local id = string.format('%d', seq)
redis.call('XADD', ev, id .. '-0', 't', ARGV[2], 'd', ARGV[3],
  'x', string.format('%d', expires), 'l', ARGV[5], 'b', ARGV[6])
local bytes = redis.call('HINCRBY', rec, 'bytes', tonumber(ARGV[6]))
local max_count, max_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
for _ = 1, {TRIM_STEPS} do
  local first = redis.call('XRANGE', ev, '-', '+', 'COUNT', 1)[1]
  if not first then break end
  local x, b = 0, 0
  local f = first[2]
  for j = 1, #f, 2 do
    if f[j] == 'x' then x = tonumber(f[j + 1]) elseif f[j] == 'b' then b = tonumber(f[j + 1]) end
  end
  if not (redis.call('XLEN', ev) > max_count or bytes > max_bytes or (x > 0 and x <= now)) then
    break
  end
  redis.call('XDEL', ev, first[1])
  bytes = redis.call('HINCRBY', rec, 'bytes', -b)
  redis.call('HSET', rec, 'lost', string.match(first[1], '^(%d+)'))
end
redis.call('PEXPIRE', rec, ARGV[9])
redis.call('PEXPIRE', ev, ARGV[9])
local result = epoch .. '-' .. id
redis.call('SET', nonce, result, 'PX', {NONCE_TTL_MS})
redis.call('XADD', notify, 'MAXLEN', '~', ARGV[11], '*', 's', ARGV[10])
return result
"""
"""KEYS: rec, ev, nonce, notify shard. ARGV: new epoch, type, data, TTL in ms (0: none), TTL
as given, size, max count, max bytes, session TTL in ms, session id, notify maxlen.
Returns ``"<epoch>-<seq>"`` (the first outcome again for a repeated nonce)."""

READ: Final = """
local rec, ev = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local state = redis.call('HMGET', rec, 'epoch', 'seq', 'lost')
local epoch = state[1]
if not epoch then return {'', '0', '0', now, {}} end
local after, limit = ARGV[2], tonumber(ARGV[3])
if epoch ~= ARGV[1] then after = '0' end
local entries
if ARGV[4] == 'newest' then
  entries = redis.call('XREVRANGE', ev, '+', '(' .. after .. '-0', 'COUNT', limit)
else
  entries = redis.call('XRANGE', ev, '(' .. after .. '-0', '+', 'COUNT', limit)
end
return {epoch, state[2], state[3], now, entries}
"""
"""KEYS: rec, ev. ARGV: the epoch the cursor belongs to, the cursor's seq, a limit, ``newest``
(the newest events after the cursor, newest first) or ``oldest`` (from the cursor on).
Returns {epoch ('' if none), head seq, lost-through seq, Redis time in ms, entries}; a cursor of
another epoch reads from the start of the current one."""

CLOSE: Final = """
local deleted = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 's', ARGV[1], 'c', '1')
return deleted
"""
"""KEYS: rec, ev, notify shard. ARGV: session id, notify maxlen. Returns the keys deleted."""
