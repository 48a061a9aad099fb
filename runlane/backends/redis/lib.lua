-- runlane Redis store: shared helpers. Loaded first; every command script is appended to it.
--
-- Key layout (P = KEYS[1], "<prefix>:{<env>}:" — one hash tag per environment, so every key a
-- call touches is in one Redis Cluster slot; scripts derive their keys from P). User-chosen
-- strings inside key names are length-prefixed (enc) so "a:b"+"c" never meets "a"+"b:c".
--   run:<id>            hash   the run (fields as in the SQLite store; absent = NULL); while
--                              it holds slots also holds_queue, holds_env (0/1), borrowed_from,
--                              lent_to (run ids), and md_set once md:<id> exists
--   att:<id>            hash   attempt number -> JSON
--   md:<id>             string metadata JSON once updated (compare-and-set from Python);
--                              until then the run's seed_metadata field is its metadata
--   blob:<id>:<field>   string payload/output over 512 KiB
--   ix:all, ix:st:<S>, ix:task:<t>, ix:tag:<t>, ix:batch:<b>, ix:sched:<s>, ix:ver:<v>,
--   ix:q:<q>, ix:parent:<id>   zsets (score 0) of run ids: lexical order = creation order
--   idem:<task>:<key>   string run id, expires with the key's TTL
--   tok:<token>         string a create_runs call's reply, kept two minutes: the same call
--                       tried again (its reply lost in an outage) gets it and writes nothing
--   n:<name>            counters (run numbers, served sequence, log sequence)
--   batch:<id>          hash   run_ids JSON, created_at, parent_id
--   tasks               hash   task id -> queue (registered, "deployed" tasks)
--   wfd:<task>          set    WAITING_FOR_DEPLOY runs of a task
--   delayed, retry, ttl, leases, twaits   zsets by time (DELAYED, REATTEMPTING, unstarted
--                       runs with a TTL by when it expires, EXECUTING leases, time waitpoints
--                       "run|attempt|idx")
--   queues              set    queue names;  queue:<q>  hash limit,total,running,paused,until
--   sq:<q>:<k>          hash   running, paused, until;  sqw:<q>:<k>  zset waiting runs by queue_ts
--   rr                  zset   sub-queues with waiting runs (JSON [q,k]) by served sequence
--   running             string executing runs holding an environment slot
--   lenders             set    FROZEN runs holding a queue slot (may lend it to a child);
--                              a slot's queue and key are its run's (queue, ckey)
--   resumeq             zset   resumed runs waiting only for an environment slot
--   wp:<id>:<attempt>   hash   wait index -> JSON {kind, fingerprint, run_ids, batch_id,
--                              resume_at} (written once)
--   wpn:<id>:<attempt>  hash   wait index -> children still pending
--   wpr:<id>:<attempt>  hash   wait index -> when it resolved
--   waiters:<child>     set    "run|attempt|idx" waitpoints counting this child
--   ready               list   admitted runs to send to the broker (the outbox; unused when
--                              the native broker shares the prefix or the caller takes what
--                              it admitted: see DIRECT and TAKE)
--   bq:<task>           list   native broker: JSON [run id, task, queue, machine] to execute
--   sig:<task>          list   native broker: wake-up tokens for workers blocked on bq:<task>
--   inflight:<worker>   hash   native broker: run id -> delivery, until its result is recorded
--   wk:<worker>         string native broker: the worker's heartbeat (PX); workers  set
--   logs:<id>           list   log entries (JSON)
--   lease:<name>        string leader lease owner (PX)
--   changes             pub/sub channel of run changes (a subscriber reads a run's state after
--                       subscribing, so it misses no change)

local P  -- the call's KEYS[1] (set by reset_call: the same code serves every call)
local NULL  -- cjson.null (set by reset_call: a library cannot reach cjson while it loads)

local function k(name) return P .. name end
-- names already encoded: a call encodes the same few names many times, and the library's
-- calls the same few tasks and queues (a pure cache, so it may outlive a call; dropped past
-- 256 KiB, as unique names such as idempotency keys pass through it too)
local ENC, ENC_BYTES = {}, 0
local function enc(s)
  local e = ENC[s]
  if not e then
    e = string.format("%d:", #s) .. s  -- "%d": a number concatenated goes through "%.14g"
    if ENC_BYTES > 262144 then ENC, ENC_BYTES = {}, 0 end
    ENC[s] = e
    ENC_BYTES = ENC_BYTES + #e
  end
  return e
end
local function rk(id) return P .. "run:" .. id end

local FINAL = {COMPLETED=true, CANCELED=true, FAILED=true, CRASHED=true, INTERRUPTED=true,
               SYSTEM_FAILURE=true, EXPIRED=true, TIMED_OUT=true}

-- A number handed to redis.call is formatted by Redis with snprintf("%.17g"), a few thousand
-- instructions each time; N() formats it once (integers with "%d", the same text) and keeps
-- the last one, as most numbers a call stores are its own clock.
local last_n, last_s = nil, nil
local SMALL = {[-1] = "-1", [0] = "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
local function N(x)
  if type(x) ~= "number" then return x end
  local small = SMALL[x]  -- the counts and flags most calls store
  if small then return small end
  if x ~= last_n then
    if x == math.floor(x) and x > -1e15 and x < 1e15 then last_s = string.format("%d", x)
    else last_s = string.format("%.17g", x) end
    last_n = x
  end
  return last_s
end

local function seed_n(x, text)
  -- a call's clock arrives as text (a plain argument, formatted by the caller as N() would
  -- format it): N() hands that text out instead of formatting the number again. An integral
  -- clock is left to N() (a "5.0" would not be what N() writes)
  if x % 1 ~= 0 then last_n, last_s = x, text end
end

local function json_list(t)
  -- cjson encodes an empty Lua table as {}: a list reply must stay a JSON list
  if #t == 0 then return "[]" end
  return cjson.encode(t)
end

local function get(id, field) return redis.call("HGET", rk(id), field) end
local function num(id, field)
  local v = redis.call("HGET", rk(id), field)
  if v then return tonumber(v) end
  return nil
end

local function hset(id, fields)
  -- fields: table name -> value; NULL or false deletes the field
  local dels = {}
  local sets = {}
  for f, v in pairs(fields) do
    if v == NULL or v == false or v == nil then
      dels[#dels + 1] = f
    else
      sets[#sets + 1] = f
      sets[#sets + 1] = N(v)
    end
  end
  if #sets > 0 then redis.call("HSET", rk(id), unpack(sets)) end
  if #dels > 0 then redis.call("HDEL", rk(id), unpack(dels)) end
end

local function publish(id, status, now)
  -- ids and statuses are runlane's own words: no JSON escaping needed
  local msg = '{"id":"' .. id .. '","status":"' .. status .. '","at":' .. N(now) .. '}'
  redis.call("PUBLISH", k("changes"), msg)
end

local function move_status(id, status, now, old)
  -- the status index and the change feed of a run whose hash the caller updates itself
  -- (status and updated_at, in the same HSET as its other fields)
  if old ~= status then
    if old then redis.call("ZREM", k("ix:st:" .. old), id) end
    redis.call("ZADD", k("ix:st:" .. status), "0", id)
  end
  publish(id, status, now)
end

local function set_status(id, status, now, old)
  -- old: the status the caller already read (saves a read)
  if old == nil then old = get(id, "status") end
  if old == status then
    redis.call("HSET", rk(id), "updated_at", N(now))
  else
    redis.call("HSET", rk(id), "status", status, "updated_at", N(now))
  end
  move_status(id, status, now, old)
end

local function counter(name, delta)
  if delta == 0 then return tonumber(redis.call("GET", k(name)) or "0") end
  return redis.call("INCRBY", k(name), N(delta))
end

-- Where an admitted run goes, in the transition that admitted it:
-- - DIRECT (the native Redis broker's key prefix, normally P itself; set by the caller): onto
--   its task's broker list;
-- - TAKE (the caller sends what the call admitted, through another broker): into the call's
--   reply (see reply), so no second round trip takes it from an outbox;
-- - otherwise into the "ready" outbox, which the engine drains into the broker (take_ready).
local DIRECT = false
local TAKE = false
local TAKEN = {}
-- PUSH (with TAKE): run id -> the Redis commands that write its message onto the caller's
-- broker (Celery or Dramatiq on this server, database PUSH_DB when set); an admitted run that
-- has them is delivered by this call, at its end, and listed in its reply
local PUSH = false
local PUSH_DB = false
local PUSHED = {}
local PUSHABLE = {LPUSH = true, RPUSH = true, HSET = true}
local RESUMED = false  -- this call put a run on resumeq
-- KNOWN: run id -> {id, task, queue, machine} of the runs this call created (no need to read
-- them back to hand them over)
local KNOWN = {}

local function reset_call(key)
  -- the state of one call: loaded as a Redis function library, this code is set up once and
  -- then serves every call, so nothing may carry over from the previous one
  -- (ENC and N's last number are pure caches: they may). Tables are made anew only when the
  -- last call used them (fewer allocations, less for Lua's collector)
  P, NULL = key, cjson.null
  DIRECT, TAKE, PUSH, PUSH_DB, RESUMED = false, false, false, false, false
  if #TAKEN > 0 then TAKEN = {} end
  if #PUSHED > 0 then PUSHED = {} end
  if next(KNOWN) ~= nil then KNOWN = {} end
end

local function handoff(id)
  -- an admitted run (its hash already says admitted 1) goes to the broker
  if DIRECT then
    local f = KNOWN[id]
    if not f then
      f = redis.call("HMGET", rk(id), "task", "queue", "machine")
      f = {id, f[1], f[2], f[3] or NULL}
    end
    local tk = enc(f[2])
    redis.call("RPUSH", DIRECT .. "bq:" .. tk, cjson.encode(f))
    -- wake one worker blocked on this task's list (a bounded pile of tokens)
    local sk = DIRECT .. "sig:" .. tk
    if redis.call("LLEN", sk) < 32 then redis.call("RPUSH", sk, 1) end
  elseif TAKE then
    if PUSH and PUSH[id] then PUSHED[#PUSHED + 1] = id
    else TAKEN[#TAKEN + 1] = id end
  else
    redis.call("RPUSH", k("ready"), id)
  end
end

local function dispatches(ids)
  -- [id, task, queue, machine] of the runs among ids that are still QUEUED (a run this call
  -- created and admitted is)
  local out = {}
  for _, id in ipairs(ids) do
    local known = KNOWN[id]
    if known then
      out[#out + 1] = known
    else
      local f = redis.call("HMGET", rk(id), "status", "task", "queue", "machine")
      if f[1] == "QUEUED" then out[#out + 1] = {id, f[2], f[3], f[4] or NULL} end
    end
  end
  return out
end

local function take_outbox(limit)
  local ids = redis.call("LRANGE", k("ready"), 0, limit - 1)
  if #ids > 0 then redis.call("LTRIM", k("ready"), #ids, -1) end
  return dispatches(ids)
end

local function reply(value, taken)
  -- the command's reply; with TAKE, {reply, JSON dispatches of the runs it admitted for the
  -- caller to send, JSON ids of those whose messages it wrote itself, JSON ids of those whose
  -- messages it could not write (the caller sends them)}. taken: those dispatches' JSON when
  -- the caller has it already
  if not TAKE then return value end
  -- nothing admitted and nothing delivered (most calls): nothing to encode
  if #TAKEN == 0 and #PUSHED == 0 then return {value, "[]", "[]", "[]"} end
  taken = taken or json_list(dispatches(TAKEN))
  local written, failed = {}, {}
  if #PUSHED > 0 then
    -- last: a SELECT (the broker's database) would send any later store call astray. A
    -- message that cannot be written (a broker key of another type, say) is reported, for
    -- the caller to send: the transition itself stands
    local function fine(res) return not (type(res) == "table" and res.err) end
    local selected = not PUSH_DB or fine(redis.pcall("SELECT", PUSH_DB))
    for _, id in ipairs(PUSHED) do
      local ok = selected
      for _, c in ipairs(PUSH[id]) do
        if ok then ok = fine(redis.pcall(unpack(c))) end
      end
      if ok then written[#written + 1] = id else failed[#failed + 1] = id end
    end
  end
  return {value, taken, json_list(written), json_list(failed)}
end

local function paused(p, untilv, now)
  return p == "1" and (untilv == false or untilv == nil or tonumber(untilv) > now)
end

-- ---------------------------------------------------------------- admission
local function upsert_queue(q, limit, total, update)
  local qk = k("queue:" .. enc(q))
  redis.call("SADD", k("queues"), q)
  if update then  -- a definition that names the queue without a limit keeps its limits
    if limit ~= NULL and limit ~= nil then redis.call("HSET", qk, "limit", limit) end
    if total ~= NULL and total ~= nil then redis.call("HSET", qk, "total", total) end
  end
  redis.call("HSETNX", qk, "running", 0)
end

local function sq_member(q, ck) return cjson.encode({q, ck}) end

local function enqueue(id, now, new_q, new_ck)
  -- the run is QUEUED; it waits in its sub-queue for admission (keeping its place if it had
  -- one). new_q, new_ck: a run just created there (its hash already says admitted 0 and
  -- queue_ts now)
  local q, ck, ts = new_q, new_ck, now
  if not new_q then
    local f = redis.call("HMGET", rk(id), "queue", "ckey", "queue_ts")
    q, ck, ts = f[1], f[2] or "", tonumber(f[3]) or now
    redis.call("HSET", rk(id), "admitted", "0", "queue_ts", N(ts))
  end
  upsert_queue(q, nil, nil, false)
  redis.call("ZADD", k("sqw:" .. enc(q) .. ":" .. enc(ck)), N(ts), id)
  local m = sq_member(q, ck)
  if not redis.call("ZSCORE", k("rr"), m) then
    local seq = redis.call("HGET", k("sq:" .. enc(q) .. ":" .. enc(ck)), "served") or "0"
    redis.call("ZADD", k("rr"), tonumber(seq), m)
  end
end

local function count_slots(n, qk, sqk)
  -- n runs took a slot of sub-queue sqk, of its queue qk and of the environment; returns the
  -- environment's running count
  redis.call("HINCRBY", sqk, "running", N(n))
  redis.call("HINCRBY", qk, "running", N(n))
  return counter("running", n)
end

local function grant(ids, qk, sqk)
  -- these runs (waiting in sub-queue sqk of queue qk) take a slot of it, of its queue and of
  -- the environment, and go to the broker; returns the environment's running count
  for _, id in ipairs(ids) do
    redis.call("HSET", rk(id), "holds_queue", "1", "holds_env", "1", "admitted", "1")
    handoff(id)
  end
  return count_slots(#ids, qk, sqk)
end

local function admits_at_once(q, ck, now, env_limit)
  -- whether a run about to be created QUEUED in sub-queue (q, ck) takes its slots at once:
  -- nothing waits there, neither queue nor key is paused, the key has room, and no total or
  -- environment limit makes sub-queues compete (what admit() would do, without passing
  -- through the waiting set and the round robin, which only order competing sub-queues).
  -- Returns the queue's and the sub-queue's keys then (the caller creates the run with its
  -- slot and calls count_slots), else false
  if env_limit ~= nil and env_limit ~= NULL then return false end
  local eq = enc(q)
  local qk = k("queue:" .. eq)
  local qh = redis.call("HMGET", qk, "limit", "total", "paused", "until", "running")
  -- (paused() asked only where a pause is recorded)
  if qh[2] or (qh[3] and paused(qh[3], qh[4], now)) then return false end
  local sub = eq .. ":" .. enc(ck)  -- (the names below: each formed once)
  local sqk = k("sq:" .. sub)
  local sh = redis.call("HMGET", sqk, "running", "paused", "until")
  if sh[2] and paused(sh[2], sh[3], now) then return false end
  local limit = qh[1] and tonumber(qh[1]) or nil
  if limit ~= nil and tonumber(sh[1] or "0") >= limit then return false end
  if redis.call("EXISTS", k("sqw:" .. sub)) == 1 then return false end
  if not qh[5] then upsert_queue(q, nil, nil, false) end
  return qk, sqk
end

local function leave_waiting(id)
  local q = get(id, "queue")
  local ck = get(id, "ckey") or ""
  local wk = k("sqw:" .. enc(q) .. ":" .. enc(ck))
  redis.call("ZREM", wk, id)
  redis.call("ZREM", k("resumeq"), id)
  if redis.call("ZCARD", wk) == 0 then redis.call("ZREM", k("rr"), sq_member(q, ck)) end
end

-- a run's slot: fields of its hash, read with the run's queue and key
local SLOT = {"holds_queue", "holds_env", "borrowed_from", "lent_to", "queue", "ckey"}

local function slot_of(f, i)
  -- the slot in an HMGET reply whose fields i .. i+5 are SLOT's (nil: the run holds none)
  if not f[i] then return nil end
  return {holds_queue = f[i], holds_env = f[i + 1], borrowed_from = f[i + 2] or nil,
          lent_to = f[i + 3] or nil, queue = f[i + 4], ckey = f[i + 5] or ""}
end

local function legacy_slot(id)
  -- earlier versions kept a run's slot in a hash of its own (slot:<id>): moved into the run's
  -- hash when met, so slots taken before an upgrade are given back all the same
  local sk = k("slot:" .. id)
  local h = redis.call("HGETALL", sk)
  if #h == 0 then return false end
  local sets = {}
  for i = 1, #h, 2 do
    if h[i] ~= "queue" and h[i] ~= "ckey" then
      sets[#sets + 1] = h[i]
      sets[#sets + 1] = h[i + 1]
    end
  end
  if #sets > 0 then redis.call("HSET", rk(id), unpack(sets)) end
  redis.call("DEL", sk)
  return #sets > 0
end

local function lend(lender)
  -- a FROZEN run lends its queue slot to the oldest waiting child it waits on, same sub-queue
  local lk = rk(lender)
  local h = redis.call("HMGET", lk, "status", "holds_queue", "lent_to", "queue", "ckey",
                       "attempt_count", "wait_index")
  if h[1] ~= "FROZEN" then return false end
  if not h[2] and legacy_slot(lender) then return lend(lender) end
  if not h[2] or h[3] then return false end
  local q, ck = h[4], h[5] or ""
  local qkey = k("queue:" .. enc(q))
  local sqkey = k("sq:" .. enc(q) .. ":" .. enc(ck))
  if redis.call("HGET", qkey, "paused") == "1" or redis.call("HGET", sqkey, "paused") == "1" then
    return false
  end
  local function waiting_here(child)
    return get(child, "status") == "QUEUED" and get(child, "admitted") == "0"
      and get(child, "resume") ~= "1" and get(child, "queue") == q
      and (get(child, "ckey") or "") == ck
  end
  local best, best_ts = nil, nil
  -- first the runs it waits on (maybe not its children: a cached idempotent run) ...
  local attempt, idx = h[6], h[7]
  local wp = idx and redis.call("HGET", k("wp:" .. lender .. ":" .. attempt), idx)
  if wp then
    for _, child in ipairs(cjson.decode(wp).run_ids) do
      if waiting_here(child) then
        local ts = num(child, "queue_ts") or 0
        if best == nil or ts < best_ts then best, best_ts = child, ts end
      end
    end
  end
  -- ... then any descendant (reached through runs on other queues)
  if not best then
    local ids = redis.call("ZRANGE", k("sqw:" .. enc(q) .. ":" .. enc(ck)), 0, 999)
    for _, child in ipairs(ids) do
      local cur, depth = child, 0
      while cur and depth < 256 do
        local parent = get(cur, "parent_id")
        if parent == lender then best = child break end
        cur, depth = parent, depth + 1
      end
      if best then break end
    end
  end
  if not best then return false end
  redis.call("HSET", rk(best), "holds_queue", "0", "holds_env", "1", "borrowed_from", lender,
             "admitted", "1")
  redis.call("HSET", lk, "lent_to", best)
  leave_waiting(best)
  counter("running", 1)
  handoff(best)
  return true
end

local function admit(now, env_limit, queues, only)
  -- queues: nil = every queue; else a set name -> true. only: just this sub-queue member
  local admitted = 0
  local capped = env_limit ~= nil and env_limit ~= NULL
  local running = capped and counter("running", 0) or 0
  local function env_free()
    if not capped then return nil end
    local f = env_limit - running
    if f < 0 then return 0 end
    return f
  end
  -- 1. resumed runs keep their queue slot: they only need an environment slot. Without an
  -- environment cap a resumed run is admitted by the transition that resumed it, so a call
  -- for one freed sub-queue that resumed none has none to look for (an engine tick would
  -- find a stray one)
  local free = env_free()
  if (free == nil and (RESUMED or not only)) or (free ~= nil and free > 0) then
    local n = free or 10000
    local ids = redis.call("ZRANGE", k("resumeq"), 0, n - 1)
    for _, id in ipairs(ids) do
      redis.call("ZREM", k("resumeq"), id)
      redis.call("HSET", rk(id), "holds_env", "1", "admitted", "1")
      running = counter("running", 1)
      admitted = admitted + 1
      handoff(id)
    end
  end
  -- 2. sub-queues, round robin (least recently served first), FIFO within one
  local members
  if only then
    members = {}
    if redis.call("ZSCORE", k("rr"), only) then members[1] = only end
  elseif queues ~= nil and next(queues) == nil then
    members = {}  -- no queue changed: only resumed runs and lenders may move
  else
    members = redis.call("ZRANGE", k("rr"), 0, -1)
  end
  local cands = {}
  local contended = env_limit ~= nil and env_limit ~= NULL
  for _, m in ipairs(members) do
    local pair = cjson.decode(m)
    local q, ck = pair[1], pair[2]
    if only or queues == nil or queues[q] then
      local qk = k("queue:" .. enc(q))
      local sqk = k("sq:" .. enc(q) .. ":" .. enc(ck))
      local qh = redis.call("HMGET", qk, "limit", "total", "paused", "until")
      local sh = redis.call("HMGET", sqk, "running", "paused", "until")
      if not paused(qh[3], qh[4], now) and not paused(sh[2], sh[3], now) then
        local c = {q = q, ck = ck, m = m, qk = qk, sqk = sqk,
                   wk = k("sqw:" .. enc(q) .. ":" .. enc(ck)),
                   limit = tonumber(qh[1]), total = tonumber(qh[2]),
                   running = tonumber(sh[1] or "0")}
        if c.total ~= nil then contended = true end
        cands[#cands + 1] = c
      end
    end
  end
  local progress = true
  while progress and #cands > 0 and admitted < 10000 do
    progress = false
    local keep = {}
    for _, c in ipairs(cands) do
      local f = env_free()
      if f == 0 then return admitted end
      local waiting = redis.call("ZCARD", c.wk)
      local room = waiting
      if c.limit ~= nil then room = math.min(room, c.limit - c.running) end
      if c.total ~= nil then
        local qrun = tonumber(redis.call("HGET", c.qk, "running") or "0")
        room = math.min(room, c.total - qrun)
      end
      if f ~= nil then room = math.min(room, f) end
      if room > 0 then
        local take = room
        if contended then take = 1 end
        local ids = redis.call("ZRANGE", c.wk, 0, take - 1)
        for _, id in ipairs(ids) do redis.call("ZREM", c.wk, id) end
        running = grant(ids, c.qk, c.sqk)
        local n = #ids
        local seq = counter("n:served", 1)
        redis.call("HSET", c.sqk, "served", seq)
        c.running = c.running + n
        admitted = admitted + n
        progress = true
        if redis.call("ZCARD", c.wk) == 0 then
          redis.call("ZREM", k("rr"), c.m)
        else
          redis.call("ZADD", k("rr"), seq, c.m)
          keep[#keep + 1] = c
        end
      elseif waiting == 0 then
        redis.call("ZREM", k("rr"), c.m)
      end
    end
    cands = keep
  end
  -- 3. FROZEN runs lend their idle queue slot to a child they wait on
  local lenders = redis.call("SMEMBERS", k("lenders"))
  for _, lender in ipairs(lenders) do
    local f = env_free()
    if f == 0 then break end
    local q = redis.call("HGET", rk(lender), "queue")
    local wanted = queues == nil or queues[q]
    if only then wanted = cjson.decode(only)[1] == q end
    if q and wanted and lend(lender) then
      running = running + 1
      admitted = admitted + 1
    end
  end
  return admitted
end

local function release(id, keep_queue_slot, slot, dels)
  -- give back the run's slots; returns the queue whose capacity changed (or nil) and the
  -- slot's concurrency key. slot: as the caller read it (slot_of; nil: read here). dels:
  -- the caller deletes the run's fields in an HDEL of its own, the slot's among them
  -- (appended to dels); else they are deleted here
  if dels == nil then slot = slot_of(redis.call("HMGET", rk(id), unpack(SLOT)), 1) end
  if not slot then
    if not legacy_slot(id) then return nil end
    slot, dels = slot_of(redis.call("HMGET", rk(id), unpack(SLOT)), 1), nil
  end
  if slot.holds_env == "1" then counter("running", -1) end
  if keep_queue_slot then
    redis.call("HSET", rk(id), "holds_env", "0")
    redis.call("SADD", k("lenders"), id)
    return slot.queue, slot.ckey
  end
  if dels then
    for i = 1, 4 do dels[#dels + 1] = SLOT[i] end
  else
    redis.call("HDEL", rk(id), "holds_queue", "holds_env", "borrowed_from", "lent_to")
  end
  -- only a slot kept while its run was suspended (holds_env 0) put the run among lenders
  if slot.holds_env ~= "1" then redis.call("SREM", k("lenders"), id) end
  if slot.lent_to and (slot.holds_queue == "1" or slot.borrowed_from) then
    -- the borrower still runs in this slot: it keeps it, so the count stays exact
    local bk = rk(slot.lent_to)
    if slot.borrowed_from then
      redis.call("HSET", bk, "holds_queue", slot.holds_queue, "borrowed_from", slot.borrowed_from)
      redis.call("HSET", rk(slot.borrowed_from), "lent_to", slot.lent_to)
    else
      redis.call("HSET", bk, "holds_queue", slot.holds_queue)
      redis.call("HDEL", bk, "borrowed_from")
    end
    return slot.queue, slot.ckey
  end
  if slot.borrowed_from then
    local lk = rk(slot.borrowed_from)
    if redis.call("HGET", lk, "lent_to") == id then redis.call("HDEL", lk, "lent_to") end
  elseif slot.holds_queue == "1" then
    local sqk = k("sq:" .. enc(slot.queue) .. ":" .. enc(slot.ckey or ""))
    if tonumber(redis.call("HINCRBY", sqk, "running", "-1")) < 0 then
      redis.call("HSET", sqk, "running", 0)
    end
    local qk = k("queue:" .. enc(slot.queue))
    if tonumber(redis.call("HINCRBY", qk, "running", "-1")) < 0 then
      redis.call("HSET", qk, "running", 0)
    end
  end
  return slot.queue, slot.ckey
end

local function leave(id)
  -- a run leaves admission entirely (final, retried, canceled, expired): slots or its place
  local status = get(id, "status")
  local q = release(id, false)
  if q == nil and status == "QUEUED" then leave_waiting(id) end
  redis.call("ZREM", k("resumeq"), id)
  return q
end

local function admit_after(now, env_limit, queues_list, subqueue)
  -- with an environment cap every queue competes for a freed slot; otherwise only what
  -- changed: the queues listed, and one freed sub-queue {q, ck} alone when its queue has no
  -- total limit (its keys are independent then: a release stays O(1) with many keys)
  if env_limit ~= nil and env_limit ~= NULL then return admit(now, env_limit, nil) end
  -- nothing waits in any sub-queue (rr), no resumed run waits (resumeq) and no run may lend
  -- its slot (lenders): nobody to admit, whatever changed
  if redis.call("EXISTS", k("rr"), k("resumeq"), k("lenders")) == 0 then return 0 end
  local set = {}
  for _, q in ipairs(queues_list) do set[q] = true end
  local admitted = 0
  if subqueue and not set[subqueue[1]] then
    if redis.call("HEXISTS", k("queue:" .. enc(subqueue[1])), "total") == 1 then
      set[subqueue[1]] = true
    else
      admitted = admit(now, env_limit, {}, sq_member(subqueue[1], subqueue[2]))
      if next(set) == nil then return admitted end  -- nothing else changed
    end
  end
  return admitted + admit(now, env_limit, set)
end

local function admit_new(now, env_limit, subqueues)
  -- runs were just queued in these sub-queues ({q, ck} pairs): admission looks at those
  -- sub-queues alone, at the whole queue when its keys share a total limit, and at every
  -- queue under an environment cap (they all compete for its slots)
  if #subqueues == 0 then return 0 end
  if env_limit ~= nil and env_limit ~= NULL then return admit(now, env_limit, nil) end
  local set, has_total, seen = {}, {}, {}
  local any_set, admitted = false, 0
  for _, sq in ipairs(subqueues) do
    local q = sq[1]
    if has_total[q] == nil then
      has_total[q] = redis.call("HEXISTS", k("queue:" .. enc(q)), "total") == 1
    end
    if has_total[q] then
      set[q] = true
      any_set = true
    else
      local m = sq_member(q, sq[2])
      if not seen[m] then
        seen[m] = true
        admitted = admitted + admit(now, env_limit, {}, m)
      end
    end
  end
  if any_set then admitted = admitted + admit(now, env_limit, set) end
  return admitted
end

-- ---------------------------------------------------------------- waits
local function resume_if_frozen_on(id, attempt, idx, now)
  if get(id, "status") ~= "FROZEN" or get(id, "attempt_count") ~= tostring(attempt)
      or get(id, "wait_index") ~= tostring(idx) then
    return 0
  end
  set_status(id, "QUEUED", now)
  redis.call("HSET", rk(id), "resume", 1, "admitted", 0)
  redis.call("HDEL", rk(id), "wait_index")
  redis.call("SREM", k("lenders"), id)
  redis.call("ZADD", k("resumeq"), num(id, "queue_ts") or now, id)
  RESUMED = true
  return 1
end

-- A waitpoint's description (JSON in wp:) never changes after it is written; its pending count
-- and resolution live apart (wpn:, wpr: hashes), so a child finishing costs O(1) however many
-- children the waitpoint lists.
local function resolve(run_id, attempt, idx, now)
  local rkey = k("wpr:" .. run_id .. ":" .. attempt)
  if redis.call("HSETNX", rkey, tostring(idx), now) == 0 then return end
  resume_if_frozen_on(run_id, attempt, idx, now)
end

local function finalized(ids, now)
  -- runs became final: count them off the waitpoints that wait on them
  for _, child in ipairs(ids) do
    local wk = k("waiters:" .. child)
    local refs = redis.call("SMEMBERS", wk)
    if #refs > 0 then redis.call("DEL", wk) end
    for _, ref in ipairs(refs) do
      local run_id, attempt, idx = string.match(ref, "^(.-)|(%d+)|(%d+)$")
      local left = redis.call("HINCRBY", k("wpn:" .. run_id .. ":" .. attempt), idx, -1)
      if left <= 0 then resolve(run_id, tonumber(attempt), tonumber(idx), now) end
    end
  end
end

local function create_waitpoint(wait, run_ids, now)
  local key = k("wp:" .. wait.run_id .. ":" .. wait.attempt)
  if redis.call("HEXISTS", key, tostring(wait.index)) == 1 then return end
  local pending = 0
  local seen = {}
  local ref = wait.run_id .. "|" .. wait.attempt .. "|" .. wait.index
  local awaited = wait.kind == "run" or wait.kind == "batch"  -- triggers are only recorded
  for _, child in ipairs(run_ids) do
    if awaited and not seen[child] then
      seen[child] = true
      local st = get(child, "status")
      if st and not FINAL[st] then
        pending = pending + 1
        redis.call("SADD", k("waiters:" .. child), ref)
      end
    end
  end
  local w = {kind = wait.kind, fingerprint = wait.fingerprint, run_ids = run_ids,
             batch_id = wait.batch_id or NULL, resume_at = wait.resume_at or NULL}
  if #run_ids == 0 then w.run_ids = "[]" end
  local text = cjson.encode(w)
  if #run_ids == 0 then text = string.gsub(text, '"run_ids":"%[%]"', '"run_ids":[]') end
  redis.call("HSET", key, tostring(wait.index), text)
  redis.call("HSET", k("wpn:" .. wait.run_id .. ":" .. wait.attempt), tostring(wait.index),
             pending)
  if pending == 0 and wait.kind ~= "time" then
    redis.call("HSET", k("wpr:" .. wait.run_id .. ":" .. wait.attempt), tostring(wait.index),
               now)
  end
  if wait.kind == "time" then redis.call("ZADD", k("twaits"), wait.resume_at, ref) end
end

local function is_resolved(run_id, attempt, idx, now)
  if redis.call("HEXISTS", k("wpr:" .. run_id .. ":" .. attempt), tostring(idx)) == 1 then
    return true
  end
  local raw = redis.call("HGET", k("wp:" .. run_id .. ":" .. attempt), tostring(idx))
  if not raw then return false end
  local w = cjson.decode(raw)
  return w.kind == "time" and w.resume_at ~= NULL and w.resume_at <= now
end

local function remove_from_time_index(id)
  redis.call("ZREM", k("delayed"), id)
  redis.call("ZREM", k("retry"), id)
  redis.call("ZREM", k("ttl"), id)
  redis.call("ZREM", k("leases"), id)
end
