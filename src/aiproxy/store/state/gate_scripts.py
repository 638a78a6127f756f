"""The Redis scripts behind gates (see gates.py): admission, seeding, settling, renewing holds.

A budget is a hash (``used``, ``held``, and ``h:<holder>`` = that request's hold) plus a sorted
set of its holders scored by lease expiry, so holds of a crashed instance are pruned at the next
admission. Times are server microseconds (``TIME``), like every other script of this backend.
"""

from __future__ import annotations

_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function ms(us) return math.max(1, math.ceil(us / 1000)) end
local function refresh_key_ttl(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIRE', key, ms(tonumber(last[2]) - now)) end
end
"""

# Words of one space-separated argument (one argument to encode instead of dozens: the client's
# cost of a command grows with its argument count).
_WORDS = """
local function words(text)
  local out = {}
  for word in string.gmatch(text, '%S+') do out[#out + 1] = word end
  return out
end
"""

# KEYS: one per gate in order (a budget adds its holders' set right after it).
# ARGV[1]: holder; ARGV[2]: unique member for rate gates ('' without any); ARGV[3]: the words
# "<lease us> <must_choose 0|1> <number of groups>", then per group its gate count followed by
# kind, limit, span us and amount of each gate.
# Returns {1, chosen choice (1-based, 0 = none)} | {0, group (0 = required), gate (1-based), retry us}
# | {-1, group, gate, group, gate, ...} for the gates to seed first.
ADMIT = (
    _PROLOGUE
    + _WORDS
    + """
local holder, member, W = ARGV[1], ARGV[2], words(ARGV[3])
local lease, must = tonumber(W[1]), W[2] == '1'
local groups, a, k = {}, 4, 1
for g = 1, tonumber(W[3]) do
  local gates = {}
  local n = tonumber(W[a])
  a = a + 1
  for i = 1, n do
    local gate = {kind = W[a], limit = tonumber(W[a + 1]), span = tonumber(W[a + 2]),
                  amount = tonumber(W[a + 3]), key = KEYS[k]}
    a, k = a + 4, k + 1
    if gate.kind == 'budget' then gate.holders = KEYS[k]; k = k + 1 end
    gates[i] = gate
  end
  groups[g] = gates
end

local missing = {-1}
for g, gates in ipairs(groups) do
  for i, gate in ipairs(gates) do
    if (gate.kind == 'count' and redis.call('EXISTS', gate.key) == 0)
      or (gate.kind == 'budget' and redis.call('HEXISTS', gate.key, 'used') == 0) then
      missing[#missing + 1] = g - 1
      missing[#missing + 1] = i
    end
  end
end
if #missing > 1 then return missing end

local function prune(gate)
  local expired = redis.call('ZRANGEBYSCORE', gate.holders, '-inf', now)
  for _, h in ipairs(expired) do
    local hold = redis.call('HGET', gate.key, 'h:' .. h)
    if hold then
      redis.call('HINCRBYFLOAT', gate.key, 'held', -tonumber(hold))
      redis.call('HDEL', gate.key, 'h:' .. h)
    end
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', gate.holders, '-inf', now) end
end

local function budget_room(gate)
  local v = redis.call('HMGET', gate.key, 'used', 'held')
  return gate.limit - tonumber(v[1]) - (tonumber(v[2]) or 0)
end

-- nil when the gate passes, else the microseconds until it may pass (0: unknown)
local function check(gate)
  if gate.kind == 'rate' then
    redis.call('ZREMRANGEBYSCORE', gate.key, '-inf', now - gate.span)
    if redis.call('ZCARD', gate.key) >= gate.limit then
      local oldest = redis.call('ZRANGE', gate.key, 0, 0, 'WITHSCORES')
      return math.max(0, tonumber(oldest[2]) + gate.span - now)
    end
  elseif gate.kind == 'count' then
    if tonumber(redis.call('GET', gate.key)) + gate.amount > gate.limit then return 0 end
  elseif gate.kind == 'budget' then
    prune(gate)
    if budget_room(gate) <= 0 then return 0 end
  else
    redis.call('ZREMRANGEBYSCORE', gate.key, '-inf', now)
    if not redis.call('ZSCORE', gate.key, holder) and redis.call('ZCARD', gate.key) >= gate.limit then
      return 0
    end
  end
  return nil
end

local function first_failure(gates)
  for i, gate in ipairs(gates) do
    local retry = check(gate)
    if retry then return {i, retry, gate.kind == 'budget'} end
  end
  return nil
end

local failed = first_failure(groups[1])
if failed then return {0, 0, failed[1], failed[2]} end
local chosen, first, refusal = 0, nil, nil
for g = 2, #groups do
  local f = first_failure(groups[g])
  if not f then chosen = g; break end
  first = first or {g, f}
  if not refusal and not f[3] then refusal = {g, f} end
end
if chosen == 0 and #groups > 1 then
  local no = refusal or (must and first)
  if no then return {0, no[1] - 1, no[2][1], no[2][2]} end
end

local function take(gate)
  if gate.kind == 'rate' then
    redis.call('ZADD', gate.key, now, member)
    redis.call('PEXPIRE', gate.key, ms(gate.span))
  elseif gate.kind == 'count' then
    redis.call('INCRBY', gate.key, gate.amount)
  elseif gate.kind == 'budget' then
    local hold = math.min(gate.amount, budget_room(gate))
    if hold > 0 then
      redis.call('HINCRBYFLOAT', gate.key, 'held', hold)
      redis.call('HSET', gate.key, 'h:' .. holder, hold)
      redis.call('ZADD', gate.holders, now + lease, holder)
      redis.call('PEXPIRE', gate.holders, ms(math.max(gate.span, lease)))
    end
    redis.call('PEXPIRE', gate.key, ms(gate.span))
  else
    redis.call('ZADD', gate.key, now + gate.span, holder)
    refresh_key_ttl(gate.key)
  end
end

for _, gate in ipairs(groups[1]) do take(gate) end
if chosen > 0 then
  for _, gate in ipairs(groups[chosen]) do take(gate) end
end
return {1, chosen > 0 and chosen - 1 or 0}
"""
)

# KEYS[1]: the gate's key. ARGV: kind, value, span us. Only when absent.
SEED = (
    _PROLOGUE
    + """
if ARGV[1] == 'count' then
  redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ms(tonumber(ARGV[3])))
elseif redis.call('HSETNX', KEYS[1], 'used', ARGV[2]) == 1 then
  redis.call('HSETNX', KEYS[1], 'held', 0)
  redis.call('PEXPIRE', KEYS[1], ms(tonumber(ARGV[3])))
end
return 1
"""
)

# KEYS: budgets (key, holders) pairs, then counts, then slots. ARGV[1]: holder; ARGV[2]: the words
# "<budgets> <counts> <slots>", then what each budget used, then what each count gives back.
SETTLE = (
    _WORDS
    + """
local holder, W = ARGV[1], words(ARGV[2])
local nb, nc, ns = tonumber(W[1]), tonumber(W[2]), tonumber(W[3])
local k, a = 1, 4
for i = 1, nb do
  local key, holders, used = KEYS[k], KEYS[k + 1], W[a]
  k, a = k + 2, a + 1
  -- A budget that expired meanwhile is left alone: it is rebuilt from the database, where this
  -- request's usage is recorded.
  if redis.call('HEXISTS', key, 'used') == 1 then
    local hold = redis.call('HGET', key, 'h:' .. holder)
    if hold then
      if tonumber(redis.call('HINCRBYFLOAT', key, 'held', -tonumber(hold))) < 0 then
        redis.call('HSET', key, 'held', 0)
      end
      redis.call('HDEL', key, 'h:' .. holder)
    end
    if tonumber(used) ~= 0 then redis.call('HINCRBYFLOAT', key, 'used', used) end
  end
  redis.call('ZREM', holders, holder)
end
for i = 1, nc do
  if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('DECRBY', KEYS[k], W[a]) end
  k, a = k + 1, a + 1
end
for i = 1, ns do
  redis.call('ZREM', KEYS[k], holder)
  k = k + 1
end
return 1
"""
)

# KEYS: slots, then budget holder sets. ARGV: holder, lease us, number of slots.
RENEW = (
    _PROLOGUE
    + """
local holder, lease, ns = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, holder) then
    redis.call('ZADD', key, now + lease, holder)
    if i <= ns then refresh_key_ttl(key) end
  end
end
return 1
"""
)
