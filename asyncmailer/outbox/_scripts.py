"""The Lua scripts behind every state change of an outbox message.

Each script runs atomically on the Redis server, so a message's state, its stream entry,
its acknowledgement and the lists an operator reads change together or not at all.

Keys, for a stream key ``S`` and an outbox id ``I``::

    S                 the stream: one entry {i: I} per message waiting for or held by a worker
    S:p:I             the payload: a JSON envelope line, then the composed bytes (stored once)
    S:s:I             the state hash: st, c, a, k, m, e, t, at, w, sid, vm, err
    S:k:KEY           idempotency key -> I (expires after key_ttl)
    S:sched           sorted set: I scored by the time it is due (send_at, retry backoff)
    S:unknown         sorted set: I scored by when it became unknown
    S:failed          sorted set: I scored by when it failed
    S:results         the results stream (trimmed approximately: results are not mail)
    S:stats           counters: enqueued, sent, failed, unknown

The worker's scripts (``BEGIN``, ``FINISH``) take a batch of entries per call and derive
each message's keys from ``S`` (as ``PROMOTE`` does): one call begins every entry a
worker takes at once, one records every outcome that is ready.

Use a hash tag in ``S`` (``mail:{outbox}``) on Redis Cluster: the scripts derive keys
from it.
"""

from __future__ import annotations

__all__ = [
    "BEGIN",
    "ENQUEUE",
    "FINISH",
    "HEARTBEAT",
    "PROMOTE",
    "REQUEUE",
    "STATS",
]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: Stores a batch of messages (every ``enqueue`` waiting while the previous call ran).
#:
#: KEYS: stream, sched, stats, then three per message: state, payload, idempotency key
#: (or the stream when it has none).
#: ARGV: key ttl ms, max queued (0 none), then five per message: id, payload, key ('' none),
#: send_at ms (0 none), Message-ID.
#: Answer: two items per message: {1, id} stored, {0, id} the key was known, {2, n} full.
#: The messages are stored in order: a key given twice in one batch stores the first.
ENQUEUE = (
    _NOW
    + """
local ttl, limit = ARGV[1], tonumber(ARGV[2])
local queued = -1
local function enqueue(skey, pkey, kkey, id, payload, key, at, mid)
  if key ~= '' then
    local known = redis.call('GET', kkey)
    if known then return 0, known end
  end
  if limit > 0 then
    if queued < 0 then queued = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) end
    if queued >= limit then return 2, tostring(queued) end
  end
  redis.call('SET', pkey, payload)
  if at > now then
    redis.call('HSET', skey, 'st', 'scheduled', 'c', now, 'a', 0, 'k', key, 'm', mid, 'at', at)
    redis.call('ZADD', KEYS[2], at, id)
  else
    local e = redis.call('XADD', KEYS[1], '*', 'i', id)
    redis.call('HSET', skey, 'st', 'queued', 'c', now, 'a', 0, 'k', key, 'm', mid, 'e', e)
  end
  if key ~= '' then redis.call('SET', kkey, id, 'PX', ttl) end
  if queued >= 0 then queued = queued + 1 end
  return 1, id
end

local out = {}
local stored = 0
for i = 0, (#KEYS - 3) / 3 - 1 do
  local k, a = 4 + 3 * i, 3 + 5 * i
  local status, value = enqueue(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a], ARGV[a + 1],
    ARGV[a + 2], tonumber(ARGV[a + 3]), ARGV[a + 4])
  if status == 1 then stored = stored + 1 end
  out[#out + 1] = status
  out[#out + 1] = value
end
if stored > 0 then redis.call('HINCRBY', KEYS[3], 'enqueued', stored) end
return out
"""
)

_RESULT = """
local function result(skey, id, st, sid, err)
  local f = redis.call('HMGET', skey, 'k', 'm', 'a')
  redis.call('XADD', RESULTS, 'MAXLEN', '~', RESULTS_MAXLEN, '*', 'i', id, 'st', st,
    'k', f[1] or '', 'm', f[2] or '', 'a', f[3] or '0', 'sid', sid or '', 'err', err or '')
end
"""

#: Takes a batch of entries for one worker and records their attempts, in one call.
#:
#: KEYS: stream, unknown, results, stats.
#: ARGV: group, consumer, resend unknown ('1'), results maxlen, count, then the entries
#: as (entry id, outbox id) pairs. With count > 0 the script reads up to count new
#: entries itself (``XREADGROUP ... >``, never blocking) and the pairs are ignored; with
#: count 0 it takes the pairs given (entries claimed with ``XAUTOCLAIM``).
#: Answer: five items per entry: entry id, outbox id, verdict ('go', 'unknown' or
#: 'skip'), the stored payload (for 'go', else ''), the attempt number (for 'go', else '').
#: Every 'go' has its attempt recorded (``sending``, with this consumer) before the answer
#: leaves Redis: the worker sends nothing that is not recorded.
BEGIN = (
    _NOW
    + """
local S, G, C = KEYS[1], ARGV[1], ARGV[2]
local RESEND, RESULTS, RESULTS_MAXLEN = ARGV[3], KEYS[3], ARGV[4]
"""
    + _RESULT
    + """
local function begin(E, ID)
  if ID == '' then
    -- Not an outbox entry: drop it.
    redis.call('XACK', S, G, E)
    redis.call('XDEL', S, E)
    return 'skip'
  end
  local skey, pkey = S .. ':s:' .. ID, S .. ':p:' .. ID
  local f = redis.call('HMGET', skey, 'st', 'e', 'a', 'w')
  local st = f[1]
  if st == 'sending' and f[2] == E and f[4] == C then
    -- This worker's own attempt, taken again after a lost reply: it has not sent yet.
    return 'go', redis.call('GET', pkey) or '', f[3]
  end
  if (not st) or f[2] ~= E or (st ~= 'queued' and st ~= 'sending') then
    -- Not this entry's message any more (finished, re-queued under another entry): drop it.
    redis.call('XACK', S, G, E)
    redis.call('XDEL', S, E)
    return 'skip'
  end
  if st == 'sending' and RESEND ~= '1' then
    -- Its worker recorded an attempt and never reported an answer: the backend may have
    -- accepted it. Park it for an operator; never resend it automatically.
    redis.call('HSET', skey, 'st', 'unknown', 't', now,
      'err', '{"type":"DeliveryUnknownError","message":"the worker sending it stopped before '
        .. 'reporting an answer; the backend may have accepted the message","fields":'
        .. '{"outcome":"ambiguous"}}')
    redis.call('HDEL', skey, 'e')
    redis.call('ZADD', KEYS[2], now, ID)
    redis.call('XACK', S, G, E)
    redis.call('XDEL', S, E)
    redis.call('HINCRBY', KEYS[4], 'unknown', 1)
    result(skey, ID, 'unknown', '', 'DeliveryUnknownError')
    return 'unknown'
  end
  local payload = redis.call('GET', pkey)
  if not payload then
    redis.call('HSET', skey, 'st', 'failed', 't', now,
      'err', '{"type":"OutboxError","message":"the stored message is missing","fields":{}}')
    redis.call('XACK', S, G, E)
    redis.call('XDEL', S, E)
    return 'skip'
  end
  local a = tonumber(f[3] or '0') + 1
  redis.call('HSET', skey, 'st', 'sending', 'a', a, 'w', C, 't', now)
  return 'go', payload, tostring(a)
end

local entries = {}
local count = tonumber(ARGV[5])
if count > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', G, C, 'COUNT', count, 'STREAMS', S, '>')
  if read then
    local items = read[1][2]
    for i = 1, #items do
      local id, fields = '', items[i][2]
      for j = 1, #fields, 2 do
        if fields[j] == 'i' then id = fields[j + 1] end
      end
      entries[#entries + 1] = {items[i][1], id}
    end
  end
else
  for i = 6, #ARGV - 1, 2 do entries[#entries + 1] = {ARGV[i], ARGV[i + 1]} end
end
local out = {}
for i = 1, #entries do
  local E, ID = entries[i][1], entries[i][2]
  local verdict, payload, a = begin(E, ID)
  out[#out + 1] = E
  out[#out + 1] = ID
  out[#out + 1] = verdict
  out[#out + 1] = payload or ''
  out[#out + 1] = a or ''
end
return out
"""
)

#: Records a batch of outcomes, each with its acknowledgement, in one call.
#:
#: KEYS: stream, sched, results, stats, unknown, failed.
#: ARGV: group, sent-state ttl ms, results maxlen, then seven items per outcome: entry
#: id, outbox id, outcome (sent|failed|unknown|retry|release), backend id, visible
#: Message-ID, error JSON, retry delay ms.
#: Answer: per outcome, the state recorded, or 'stale'.
FINISH = (
    _NOW
    + """
local S, G, SENT_TTL = KEYS[1], ARGV[1], ARGV[2]
local RESULTS, RESULTS_MAXLEN = KEYS[3], ARGV[3]
"""
    + _RESULT
    + """
local function finish(E, ID, outcome, sid, vm, err, delay)
  local skey, pkey = S .. ':s:' .. ID, S .. ':p:' .. ID
  local f = redis.call('HMGET', skey, 'st', 'e')
  local st = f[1]
  if f[2] ~= E and not (st == 'unknown' and (outcome == 'sent' or outcome == 'failed')) then
    redis.call('XACK', S, G, E)
    return 'stale'
  end
  if st == 'unknown' then
    -- Claimed by another worker and parked as unknown while this one was still waiting
    -- for the answer: the answer is better than "unknown". Only if nobody re-queued it.
    if outcome ~= 'sent' and outcome ~= 'failed' then return 'stale' end
    if redis.call('ZREM', KEYS[5], ID) == 0 then return 'stale' end
    redis.call('HINCRBY', KEYS[4], 'unknown', -1)
  elseif st ~= 'sending' and st ~= 'queued' then
    redis.call('XACK', S, G, E)
    return 'stale'
  end
  redis.call('XACK', S, G, E)
  redis.call('XDEL', S, E)
  if outcome == 'release' then
    local e = redis.call('XADD', S, '*', 'i', ID)
    redis.call('HSET', skey, 'st', 'queued', 'e', e, 't', now)
    return 'queued'
  end
  redis.call('HDEL', skey, 'e', 'w')
  if outcome == 'retry' then
    local at = now + tonumber(delay)
    redis.call('HSET', skey, 'st', 'scheduled', 'at', at, 't', now, 'err', err)
    redis.call('ZADD', KEYS[2], at, ID)
    return 'scheduled'
  end
  if outcome == 'sent' then
    redis.call('HSET', skey, 'st', 'sent', 'sid', sid, 'vm', vm, 't', now)
    redis.call('HDEL', skey, 'err')
    redis.call('DEL', pkey)
    redis.call('PEXPIRE', skey, SENT_TTL)
    redis.call('HINCRBY', KEYS[4], 'sent', 1)
    result(skey, ID, 'sent', sid, '')
    return 'sent'
  end
  local zset = KEYS[6]
  if outcome == 'unknown' then zset = KEYS[5] end
  redis.call('HSET', skey, 'st', outcome, 't', now, 'err', err)
  redis.call('ZADD', zset, now, ID)
  redis.call('HINCRBY', KEYS[4], outcome, 1)
  local etype = string.match(err, '"type":"([^"]*)"') or ''
  result(skey, ID, outcome, '', etype)
  return outcome
end

local out = {}
for i = 4, #ARGV - 6, 7 do
  out[#out + 1] = finish(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
    ARGV[i + 5], ARGV[i + 6])
end
return out
"""
)

#: KEYS: stream, sched. ARGV: state-key prefix (``S:s:``), limit.
#: Moves due messages from the schedule into the stream. Answer: how many moved.
PROMOTE = (
    _NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #due do
  local id = due[i]
  redis.call('ZREM', KEYS[2], id)
  local skey = ARGV[1] .. id
  if redis.call('HGET', skey, 'st') == 'scheduled' then
    local e = redis.call('XADD', KEYS[1], '*', 'i', id)
    redis.call('HSET', skey, 'st', 'queued', 'e', e, 't', now)
    redis.call('HDEL', skey, 'at')
  end
end
return #due
"""
)

#: KEYS: stream, state, payload, the list it leaves (unknown or failed), stats.
#: ARGV: id, the state it must be in ('unknown' or 'failed').
#: Answer: 1 re-queued, 0 not in that state, -1 payload gone.
REQUEUE = (
    _NOW
    + """
if redis.call('HGET', KEYS[2], 'st') ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
redis.call('ZREM', KEYS[4], ARGV[1])
local e = redis.call('XADD', KEYS[1], '*', 'i', ARGV[1])
redis.call('HSET', KEYS[2], 'st', 'queued', 'e', e, 't', now)
redis.call('HDEL', KEYS[2], 'err')
redis.call('HINCRBY', KEYS[5], ARGV[2], -1)
return 1
"""
)

#: KEYS: stream. ARGV: group, consumer, entry ids... Resets the idle time of the entries
#: this consumer still owns, so that nobody claims them while they are being sent.
HEARTBEAT = """
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
"""

#: KEYS: stream, sched, unknown, failed, results, stats. ARGV: group, window ms.
#: Answer: {xlen, pending, scheduled, unknown, failed, sent total, oldest entry ms or -1,
#: now ms, sent in window}.
STATS = (
    _NOW
    + """
local xlen = redis.call('XLEN', KEYS[1])
local pending = 0
local ok, summary = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1])
if ok and summary then pending = tonumber(summary[1]) or 0 end
local oldest = -1
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
local recent = 0
local from = now - tonumber(ARGV[2])
local cursor = tostring(from)
while true do
  local batch = redis.call('XRANGE', KEYS[5], cursor, '+', 'COUNT', 500)
  for i = 1, #batch do
    local fields = batch[i][2]
    for j = 1, #fields, 2 do
      if fields[j] == 'st' and fields[j + 1] == 'sent' then recent = recent + 1 end
    end
  end
  if #batch < 500 then break end
  cursor = '(' .. batch[#batch][1]
end
local sent = tonumber(redis.call('HGET', KEYS[6], 'sent') or '0')
return {xlen, pending, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]), sent, oldest, now, recent}
"""
)
