-- runlane Redis store: what every command uses. scripts.py loads this file first, then the
-- other parts of lib/ a command needs, then the command (commands/<name>.lua); see there.
--
-- Key layout (prefix = KEYS[1], "<prefix>:{<env>}:" — one hash tag per environment, so every
-- key a call touches is in one Redis Cluster slot; the commands derive their keys from the
-- prefix). User-chosen strings inside key names are length-prefixed (enc) so "a:b"+"c" never
-- meets "a"+"b:c".
--   run:<id>            hash   the run (fields as in the SQLite store; absent = NULL); while
--                              it holds slots also holds_queue, holds_env (0/1), borrowed_from,
--                              lent_to (run ids), and md_set once md:<id> exists
--   att:<id>            hash   attempt number -> JSON
--   md:<id>             string metadata JSON once updated (compare-and-set from Python);
--                              until then the run's seed_metadata field is its metadata
--   blob:<id>:<field>   string payload/output over 512 KiB
--   ix:all, ix:st:<S>, ix:task:<t>, ix:tag:<t>, ix:batch:<b>, ix:sched:<s>, ix:ver:<v>,
--   ix:q:<q>, ix:parent:<id>   zsets (score 0) of run ids: lexical order = creation order
--   children:<id>       set    a run's children (cancel goes down them)
--   idem:<task>:<key>   string run id, expires with the key's TTL
--   tok:<token>         string a create_runs call's reply, kept two minutes: the same call
--                       tried again (its reply lost in an outage) gets it and writes nothing
--   n:<name>            counters (run numbers, served sequence, log sequence)
--   batch:<id>          hash   run_ids JSON, created_at, parent_id
--   tasks               hash   task id -> queue (registered, "deployed" tasks)
--   wfd:<task>          set    WAITING_FOR_DEPLOY runs of a task
--   delayed, retry, ttl, leases, twaits, gc   zsets by time (DELAYED, REATTEMPTING, unstarted
--                       runs with a TTL by when it expires, EXECUTING leases, time waitpoints
--                       "run|attempt|idx", finished runs by when they are purged)
--   draining            set    runs canceled while executing, until their attempt stops
--   queues              set    queue names;  queue:<q>  hash limit,total,running,paused,until
--   sq:<q>:<k>          hash   running, paused, until, served;  sqw:<q>:<k>  zset waiting
--                              runs by queue_ts;  pausedkeys  set  paused sub-queues ([q,k])
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
--   feed                stream: the change feed, entries "<n>-0" {r = run ids, k = "r": the
--                       runs a call changed ("id,id,..."), or "s": a stream chunk of run r}
--                       (the latest FEED_KEEP); feedseq the n
--   st:<id>             stream: the run's stream chunks, entries "<n>-0" (n of its feed
--                       entry) {k = stream key, d = JSON}

-- Loaded as a function library this code is set up once and serves every call: the state of
-- a call lives in these locals, set by begin() (through reset_call) at the start of each.
local prefix  -- the call's KEYS[1]
local NULL  -- cjson.null (a library cannot reach cjson while it loads)

local function key(name) return prefix .. name end

-- encoded names, cached: a call encodes the same few names many times, and a library's
-- calls the same tasks and queues (a pure cache, so it may outlive a call; emptied past
-- 256 KiB, as unique names such as idempotency keys pass through it too)
local ENCODED, ENCODED_BYTES = {}, 0
local function enc(s)
  local e = ENCODED[s]
  if not e then
    e = string.format("%d:", #s) .. s
    if ENCODED_BYTES > 262144 then ENCODED, ENCODED_BYTES = {}, 0 end
    ENCODED[s] = e
    ENCODED_BYTES = ENCODED_BYTES + #e
  end
  return e
end

local function run_key(id) return prefix .. "run:" .. id end

local FINAL = {COMPLETED=true, CANCELED=true, FAILED=true, CRASHED=true, INTERRUPTED=true,
               SYSTEM_FAILURE=true, EXPIRED=true, TIMED_OUT=true}

-- A number handed to redis.call is formatted by Redis with snprintf("%.17g"), a large part of
-- a call's cost: numbers are handed over as text from as_text(), which formats each once
-- (integers with "%d", the same text) and keeps the last one, as most are the call's clock.
local last_number, last_text = nil, nil
local SMALL = {[-1] = "-1", [0] = "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
local function as_text(x)
  if type(x) ~= "number" then return x end
  local small = SMALL[x]
  if small then return small end
  if x ~= last_number then
    if x == math.floor(x) and x > -1e15 and x < 1e15 then last_text = string.format("%d", x)
    else last_text = string.format("%.17g", x) end
    last_number = x
  end
  return last_text
end

local function seed_text(x, text)
  -- the call's clock x arrived as text (formatted by the caller as as_text would): as_text
  -- hands that text out. An integral clock is left to as_text (a "5.0" is not what it writes)
  if x % 1 ~= 0 then last_number, last_text = x, text end
end

local function json_list(t)
  -- cjson encodes an empty Lua table as {}: a list reply must stay a JSON list
  if #t == 0 then return "[]" end
  return cjson.encode(t)
end

local function given(v)
  -- an optional argument: false when unset (nil or JSON null)
  if v == nil or v == NULL then return false end
  return v
end

local function get(id, field) return redis.call("HGET", run_key(id), field) end
local function num(id, field)
  local v = redis.call("HGET", run_key(id), field)
  if v then return tonumber(v) end
  return nil
end

local function hset(id, fields)
  -- fields: table name -> value; NULL or false deletes the field
  local dels = {}
  local sets = {}
  for field, v in pairs(fields) do
    if v == NULL or v == false or v == nil then
      dels[#dels + 1] = field
    else
      sets[#sets + 1] = field
      sets[#sets + 1] = as_text(v)
    end
  end
  if #sets > 0 then redis.call("HSET", run_key(id), unpack(sets)) end
  if #dels > 0 then redis.call("HDEL", run_key(id), unpack(dels)) end
end

local FEED_KEEP = "20000"  -- entries the change feed keeps (about: trimmed by macro node)

local function note(id, kind)
  -- an entry of the change feed: the run changed (kind "r") or got a stream chunk ("s"). Its
  -- id is "<n>-0", n counting up from 1 with no hole, so a reader finds out what was trimmed
  local n = redis.call("INCR", key("feedseq"))
  redis.call("XADD", key("feed"), "MAXLEN", "~", FEED_KEEP, string.format("%d-0", n),
             "r", id, "k", kind)
  return n
end

-- the runs this call changed, in order: one feed entry at its end ({r = "id,id,..."}), so a
-- call that changes 500 runs writes one entry, not 500
local CHANGED, CHANGED_LIST, CHANGED_N = {}, {}, 0

local function publish(id)
  if not CHANGED[id] then
    CHANGED[id] = true
    CHANGED_N = CHANGED_N + 1
    CHANGED_LIST[CHANGED_N] = id
  end
end

local function flush_changes()
  if CHANGED_N == 0 then return end
  local n = redis.call("INCR", key("feedseq"))
  redis.call("XADD", key("feed"), "MAXLEN", "~", FEED_KEEP, string.format("%d-0", n),
             "r", table.concat(CHANGED_LIST, ",", 1, CHANGED_N), "k", "r")
  CHANGED, CHANGED_LIST, CHANGED_N = {}, {}, 0
end

local function move_status(id, status, at, old)
  -- the status index and the change feed of a run whose hash the caller updates itself
  -- (status and updated_at, in the same HSET as its other fields)
  if old ~= status then
    if old then redis.call("ZREM", key("ix:st:" .. old), id) end
    redis.call("ZADD", key("ix:st:" .. status), "0", id)
  end
  publish(id)
end

local function set_status(id, status, at, old)
  -- old: the status the caller already read (nil: read here)
  if old == nil then old = get(id, "status") end
  if old == status then
    redis.call("HSET", run_key(id), "updated_at", as_text(at))
  else
    redis.call("HSET", run_key(id), "status", status, "updated_at", as_text(at))
  end
  move_status(id, status, at, old)
end

local function counter(name, delta)
  if delta == 0 then return tonumber(redis.call("GET", key(name)) or "0") end
  return redis.call("INCRBY", key(name), as_text(delta))
end

-- ---------------------------------------------------------------- the call
local command_name  -- ARGV[1]
local args  -- the command's argument (ARGV[2] decoded, or a plain command's parsed arguments)
local now  -- the call's clock (args.now)
local env_limit  -- the environment's concurrency limit (nil: none)

-- Where an admitted run goes, in the transition that admitted it (see handoff):
-- - DIRECT (the native Redis broker's key prefix, normally prefix itself; set by the caller):
--   onto its task's broker list;
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

local function reset_call(keys)
  -- nothing may carry over from the previous call (ENCODED and as_text's last number are
  -- pure caches: they may). Tables are made anew only when the last call used them
  prefix, NULL = keys[1], cjson.null
  DIRECT, TAKE, PUSH, PUSH_DB, RESUMED = false, false, false, false, false
  if #TAKEN > 0 then TAKEN = {} end
  if #PUSHED > 0 then PUSHED = {} end
  if next(KNOWN) ~= nil then KNOWN = {} end
  if CHANGED_N > 0 then CHANGED, CHANGED_LIST, CHANGED_N = {}, {}, 0 end  -- (a call that failed)
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
      local fields = redis.call("HMGET", run_key(id), "status", "task", "queue", "machine")
      if fields[1] == "QUEUED" then
        out[#out + 1] = {id, fields[2], fields[3], fields[4] or NULL}
      end
    end
  end
  return out
end

local function reply(value, taken)
  -- the command's reply; with TAKE, {reply, JSON dispatches of the runs it admitted for the
  -- caller to send, JSON ids of those whose messages it wrote itself, JSON ids of those whose
  -- messages it could not write (the caller sends them)}. taken: those dispatches' JSON when
  -- the caller has it already
  if not TAKE then return value end
  if #TAKEN == 0 and #PUSHED == 0 then return {value, "[]", "[]", "[]"} end
  taken = taken or json_list(dispatches(TAKEN))
  local written, failed = {}, {}
  if #PUSHED > 0 then
    -- last: a SELECT (the broker's database) would send any later store call astray. A
    -- message that cannot be written (a broker key of another type, say) is reported, for
    -- the caller to send: the transition itself stands
    local function fine(result) return not (type(result) == "table" and result.err) end
    local selected = not PUSH_DB or fine(redis.pcall("SELECT", PUSH_DB))
    for _, id in ipairs(PUSHED) do
      local ok = selected
      for _, command in ipairs(PUSH[id]) do
        if ok then ok = fine(redis.pcall(unpack(command))) end
      end
      if ok then written[#written + 1] = id else failed[#failed + 1] = id end
    end
  end
  return {value, taken, json_list(written), json_list(failed)}
end

-- The commands, by name: each commands/<name>.lua returns its function and, for a command that
-- takes plain arguments, their parser (filled in as the command files load).
local COMMANDS, PARSERS = {}, {}

-- Most commands take one JSON document (ARGV[2]). The transitions every run goes through take
-- plain string arguments instead, which cjson would otherwise decode whole into a table:
-- ARGV[2] is now (as "%.17g" formats it, stored as it is: see seed_text), then the command's
-- own, in the order its parser reads them. "" is unset, and trailing unset arguments may be
-- left out (the rare ones come last).
local function plain_number(v)
  -- a plain numeric argument: nil when unset, false when malformed
  if v == nil or v == "" then return nil end
  return tonumber(v) or false
end

local function plain_string(v)
  -- a plain string argument: nil when unset
  if v == "" then return nil end
  return v
end

local function begin(keys, argv)
  -- set up one call; returns an error reply for an argument refused before any write
  reset_call(keys)
  command_name = argv[1]
  local parser = PARSERS[command_name]
  if parser then
    local expected
    args, expected = parser(argv)
    if expected then
      return redis.error_reply("runlane: " .. command_name
                               .. ": malformed arguments (expected now, " .. expected .. ")")
    end
  else
    args = cjson.decode(argv[2])
  end
  now = args.now
  if type(now) == "string" then  -- the clock as text (see seed_text): plain, create_runs
    local t = tonumber(now)
    if not t then
      return redis.error_reply("runlane: " .. command_name .. ": now is not a number: " .. now)
    end
    seed_text(t, now)
    now, args.now = t, t
  end
  env_limit = args.env_limit
  if env_limit == NULL then env_limit = nil end
  if args.direct and args.direct ~= NULL then DIRECT = args.direct end
  if args.take and args.take ~= NULL then TAKE = args.take end
  if TAKE and args.push and args.push ~= NULL then
    PUSH = args.push
    for _, commands in pairs(PUSH) do  -- checked before anything is written
      for _, command in ipairs(commands) do
        if not PUSHABLE[command[1]] then
          return redis.error_reply("runlane: a pushed message may not use "
                                   .. tostring(command[1]))
        end
      end
    end
  end
  if PUSH and args.push_db and args.push_db ~= NULL then PUSH_DB = args.push_db end
  return nil
end

local function run(keys, argv)
  -- one call: KEYS[1] the key prefix, ARGV[1] the command, then its arguments
  local refused = begin(keys, argv)
  if refused then return refused end
  local command = COMMANDS[command_name]
  if not command then
    return redis.error_reply("runlane: unknown store command " .. tostring(command_name))
  end
  local reply = command()
  flush_changes()
  return reply
end
