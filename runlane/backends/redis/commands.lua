-- runlane Redis store: the commands (ARGV[1] names one, ARGV[2] is its JSON argument, except
-- for the hot commands of PLAIN, which take plain arguments). Each call is one atomic
-- transition; guards check the run's current status (and attempt).

local cmd, a, now, env_limit  -- the call's command, argument, clock and environment cap

-- The transitions every run goes through take plain string arguments instead of one JSON
-- document, which cjson would decode whole into a table: ARGV[2] is now (as "%.17g" formats
-- it, stored as it is: see seed_n), then the command's own, in the order PLAIN's parsers give.
-- "" is unset, and trailing unset arguments may be left out (the rare ones come last). The
-- parsers are written for few Lua instructions (every one costs on the server's single
-- thread): one check of everything, one table.
local function pnum(v)
  -- a plain numeric argument: nil when unset, false when malformed
  if v == nil or v == "" then return nil end
  return tonumber(v) or false
end

local function pstr(v)
  -- a plain string argument: nil when unset
  if v == "" then return nil end
  return v
end

-- each: the call's argument (what its JSON document would decode to), or nil and what the
-- arguments should have been
local PLAIN = {}
PLAIN.start_attempt = function(argv)
  local lease, dma = pnum(argv[5]), pnum(argv[6])
  if #argv < 7 or argv[3] == "" or argv[4] == "" or argv[7] == "" or not dma
      or lease == false then
    return nil, "run_id, worker_id, lease_until, default_max_attempts, attempt_id, task ids..."
  end
  local known = {}
  for i = 8, #argv do known[argv[i]] = true end
  -- times as their text: stored as they are
  return {now = argv[2], run_id = argv[3], worker_id = argv[4], lease_until = lease and argv[5],
          default_max_attempts = dma, attempt_id = argv[7], known = known}
end
PLAIN.finish_attempt = function(argv)
  -- record: the attempt's final record up to its duration (which the call appends) from a
  -- caller that knows the attempt as its start left it; used_ms: the attempt's duration
  -- then. Unset: the call reads the record. purge_at: now + the retention (see retain)
  local purge_at, attempt, attempt_ms = pnum(argv[4]), pnum(argv[6]), pnum(argv[10])
  local record, used_ms, retry_at, limit = pstr(argv[11]), pnum(argv[12]), pnum(argv[14]),
                                           pnum(argv[17])
  if not attempt or purge_at == false or attempt_ms == false or used_ms == false
      or retry_at == false or limit == false or (record == nil) ~= (used_ms == nil)
      or argv[5] == "" or argv[7] == "" or (argv[8] or "") == "" then
    return nil, "take, purge_at, run_id, attempt, attempt_status, run_status, output, "
      .. "attempt_ms, record, used_ms (with record), error, retry_at, machine, ack, "
      .. "env_limit, direct"
  end
  return {now = argv[2], take = argv[3] == "1", purge_at = purge_at and argv[4],
          run_id = argv[5], attempt = attempt,
          outcome = {attempt_status = argv[7], run_status = argv[8], output = pstr(argv[9]),
                     attempt_ms = attempt_ms, error = pstr(argv[13]),
                     retry_at = retry_at and argv[14], machine = pstr(argv[15])},
          record = record, used_ms = used_ms, ack = pstr(argv[16]), env_limit = limit,
          direct = pstr(argv[18])}
end

local function begin(keys, argv)
  -- set up one call; returns an error reply for an argument refused before any write
  reset_call(keys[1])
  cmd = argv[1]
  local plain = PLAIN[cmd]
  if plain then
    local expected
    a, expected = plain(argv)
    if expected then
      return redis.error_reply("runlane: " .. cmd .. ": malformed arguments (expected now, "
                               .. expected .. ")")
    end
  else
    a = cjson.decode(argv[2])
  end
  now = a.now
  if type(now) == "string" then  -- the clock as text (see seed_n): PLAIN, create_runs
    local t = tonumber(now)
    if not t then
      return redis.error_reply("runlane: " .. cmd .. ": now is not a number: " .. now)
    end
    seed_n(t, now)
    now, a.now = t, t
  end
  env_limit = a.env_limit
  if env_limit == NULL then env_limit = nil end
  if a.direct and a.direct ~= NULL then DIRECT = a.direct end
  if a.take and a.take ~= NULL then TAKE = a.take end
  if TAKE and a.push and a.push ~= NULL then
    PUSH = a.push
    for _, cmds in pairs(PUSH) do  -- checked before anything is written
      for _, c in ipairs(cmds) do
        if not PUSHABLE[c[1]] then
          return redis.error_reply("runlane: a pushed message may not use " .. tostring(c[1]))
        end
      end
    end
  end
  if PUSH and a.push_db and a.push_db ~= NULL then PUSH_DB = a.push_db end
  return nil
end

local function s(v) if v == nil or v == NULL then return false end return v end

-- fields of a new run stored under their own name when the trigger gave them
local OPTIONAL = {"idempotency_key", "ttl", "delay_until", "batch_id", "parent_id", "root_id",
                  "schedule_id", "concurrency_key", "max_attempts", "max_duration", "machine",
                  "version", "trace_context"}

local function index_run(id, r)
  redis.call("ZADD", k("ix:all"), "0", id)
  redis.call("ZADD", k("ix:task:" .. enc(r.task)), "0", id)
  redis.call("ZADD", k("ix:q:" .. enc(r.queue)), "0", id)
  for _, tag in ipairs(r.tags) do redis.call("ZADD", k("ix:tag:" .. enc(tag)), 0, id) end
  if s(r.batch_id) then redis.call("ZADD", k("ix:batch:" .. r.batch_id), 0, id) end
  if s(r.schedule_id) then redis.call("ZADD", k("ix:sched:" .. r.schedule_id), 0, id) end
  if s(r.version) then redis.call("ZADD", k("ix:ver:" .. enc(r.version)), 0, id) end
  if s(r.parent_id) then redis.call("ZADD", k("ix:parent:" .. r.parent_id), 0, id) end
end

local function attempt_update(id, n, fields)
  local key = k("att:" .. id)
  local raw = redis.call("HGET", key, tostring(n))
  if not raw then return end
  local at = cjson.decode(raw)
  for f, v in pairs(fields) do at[f] = v end
  redis.call("HSET", key, tostring(n), cjson.encode(at))
end

local function segment_ms(id, t)
  local start = num(id, "segment_started_at")
  if not start then return 0 end
  return math.max(0, math.floor((t - start) * 1000))
end

local function executed_ms(id, n, t, attempt_ms)
  -- execution time of this stretch: the attempt's own measure (waits excluded) when given
  if attempt_ms == nil or attempt_ms == NULL then return segment_ms(id, t) end
  local raw = redis.call("HGET", k("att:" .. id), tostring(n))
  local used = 0
  if raw then used = cjson.decode(raw).duration_ms or 0 end
  return math.max(0, attempt_ms - used)
end

local function queue_or_wait(id, t)
  -- DELAYED → QUEUED (task known) or WAITING_FOR_DEPLOY; the TTL starts now
  local task = get(id, "task")
  local ttl = num(id, "ttl")
  redis.call("HSET", rk(id), "queued_at", t)
  if ttl then redis.call("ZADD", k("ttl"), t + ttl, id) end  -- when it expires unstarted
  if redis.call("HEXISTS", k("tasks"), task) == 1 then
    set_status(id, "QUEUED", t)
    enqueue(id, t)
    return get(id, "queue")
  end
  set_status(id, "WAITING_FOR_DEPLOY", t)
  redis.call("SADD", k("wfd:" .. enc(task)), id)
  return nil
end

local function fmt_duration(seconds)
  local total = math.floor(seconds + 0.5)
  if total <= 0 then return "0s" end
  local out = ""
  for _, u in ipairs({{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}}) do
    local n = math.floor(total / u[2])
    total = total - n * u[2]
    if n > 0 then out = out .. n .. u[1] end
  end
  return out
end

local function remove_from_time_index_keep_lease(id)
  redis.call("ZREM", k("delayed"), id)
  redis.call("ZREM", k("retry"), id)
  redis.call("ZREM", k("ttl"), id)
  redis.call("SREM", k("wfd:" .. enc(get(id, "task"))), id)
end

local function retain(id, t)
  -- a finished run is kept this long: until t + a.retention, or a.purge_at, that sum for t =
  -- now as the caller made it (finish_attempt: no number to format)
  if a.purge_at then
    redis.call("ZADD", k("gc"), a.purge_at, id)
  elseif a.retention and a.retention ~= NULL then
    redis.call("ZADD", k("gc"), N(t + a.retention), id)
  end
end

local function finish_final(id, t)
  remove_from_time_index(id)
  redis.call("SREM", k("wfd:" .. enc(get(id, "task"))), id)
  retain(id, t)
end

local function start(id, worker_id, known, lease_until, default_max_attempts, attempt_id)
  -- an admitted QUEUED run -> EXECUTING: a new attempt, or the suspended one resumed. Returns
  -- the attempt, the run's fields its caller reads as they are after the start (name ->
  -- value: read once, with one HGETALL, for the checks and for the reply) and whether
  -- md:<id> exists
  local key = rk(id)
  -- the hash as RESP3 makes it, a map: a table Redis fills in C, not field by field in Lua
  -- (the rest of the call keeps RESP2's replies, nil as false)
  redis.setresp(3)
  local h = redis.call("HGETALL", key).map
  redis.setresp(2)
  if h.status ~= "QUEUED" or h.admitted ~= "1" or not known[h.task] then return nil end
  -- a fetch reads its clock before its call reaches Redis, where a run queued meanwhile may
  -- wait: the start is not dated before the run was queued
  local t = now
  local queued = tonumber(h.updated_at)
  if queued and queued > t then t = queued end
  local number, started_at, used_ms, machine  -- machine: the attempt's, as JSON
  local resumed = h.resume == "1"
  local ak, ts = k("att:" .. id), N(t)  -- (each N() a call: the texts kept)
  if resumed then
    number = tonumber(h.attempt_count)
    local at = cjson.decode(redis.call("HGET", ak, N(number)))
    at.status = "EXECUTING"
    at.worker_id = worker_id
    redis.call("HSET", ak, N(number), cjson.encode(at))
    attempt_id, started_at, used_ms = at.id, N(at.started_at), N(at.duration_ms or 0)
    machine = at.machine == nil and "null" or cjson.encode(at.machine)
  else
    number = tonumber(h.attempt_count or "0") + 1
    started_at, used_ms = ts, "0"
    machine = h.machine and cjson.encode(h.machine) or "null"
    -- written out rather than through cjson, which formats each number with snprintf
    -- (an attempt id is runlane's own: letters, digits and "_", nothing to escape)
    redis.call("HSET", ak, N(number), '{"id":"' .. attempt_id .. '","number":' .. N(number)
      .. ',"status":"EXECUTING","started_at":' .. ts .. ',"worker_id":'
      .. cjson.encode(worker_id) .. ',"machine":' .. machine .. ',"duration_ms":0}')
  end
  local ns = N(number)
  local sets = {"status", "EXECUTING", "updated_at", ts, "attempt_count", ns,
                "worker_id", worker_id, "resume", "0", "segment_started_at", ts,
                "attempts_allowed", h.max_attempts or N(default_max_attempts)}
  local lease = s(lease_until) and N(lease_until)
  if lease then
    sets[#sets + 1] = "lease_until"
    sets[#sets + 1] = lease
    redis.call("ZADD", k("leases"), lease, id)
  end
  if not h.started_at then
    sets[#sets + 1] = "started_at"
    sets[#sets + 1] = ts
  end
  redis.call("HSET", key, unpack(sets))
  move_status(id, "EXECUTING", t, "QUEUED")
  if h.lease_until and not lease then redis.call("HDEL", key, "lease_until") end
  if h.ttl then  -- its TTL no longer applies: it started
    redis.call("ZREM", k("ttl"), id)
    if h.ttl_expires_at then  -- kept in the hash by earlier versions
      redis.call("HDEL", key, "ttl_expires_at")
    end
  end
  -- the fields returned are those the caller reads (RedisStore._started, rows.to_run), as they
  -- are now: the ones this start changed set here, and the run's bookkeeping left out (each
  -- field costs its encoding here and its decoding there)
  local md_set = h.md_set
  h.status, h.updated_at, h.attempt_count, h.started_at = "EXECUTING", ts, ns,
                                                          h.started_at or ts
  h.ckey, h.admitted, h.resume, h.queue_given, h.queue_ts, h.holds_queue, h.holds_env = nil
  h.worker_id, h.segment_started_at, h.attempts_allowed, h.lease_until, h.md_set = nil
  h.ttl_expires_at, h.borrowed_from, h.lent_to, h.wait_index = nil
  -- the attempt as JSON text (see above), with what its record holds that the caller may not
  -- know (its machine: a finish writes the final record from it, see finish_attempt)
  return '{"attempt_id":"' .. attempt_id .. '","number":' .. ns .. ',"started_at":'
           .. started_at .. ',"resumed":' .. (resumed and "true" or "false") .. ',"used_ms":'
           .. used_ms .. ',"max_duration":' .. N(tonumber(h.max_duration) or "null")
           .. ',"machine":' .. machine .. '}',
         h, md_set
end

local function started_json(id, st, h, md_set, lead)
  -- [lead..., attempt, run fields (name -> value), metadata] of a start, as JSON text (lead:
  -- JSON text of elements before them, with its comma, or ""); the metadata is the run's
  -- document once updated (md:<id>, as a JSON string), null while its seed_metadata still is
  local md = md_set and redis.call("GET", k("md:" .. id))
  return "[" .. lead .. st .. "," .. cjson.encode(h) .. ","
         .. (md and cjson.encode(md) or "null") .. "]"
end

local function release_stopped(id, status, count, attempt)
  -- attempt `attempt` has stopped; if its run was canceled while it ran (status and attempt
  -- count as read by the caller), the slots it kept while stopping are free now
  if status ~= "CANCELED" or count ~= N(attempt) then return end
  local q = release(id, false)
  redis.call("HDEL", rk(id), "lease_until")
  redis.call("ZREM", k("leases"), id)
  redis.call("SREM", k("draining"), id)
  local queues = {}
  if q then queues[1] = q end
  admit_after(now, env_limit, queues)
end

local function settle(id)
  -- the delivery that carried this run is done: its result is being recorded right here
  if s(a.ack) then redis.call("HDEL", k("inflight:" .. a.ack), id) end
end

if cmd == "create_runs" then
  -- ids: the run id of each NewRun; cached: [index, id, status, queue] of those an idempotency
  -- key answered with an existing run (the reply: the caller knows what it created)
  -- token: names this call, so that trying it again after its reply was lost (a connection
  -- reset, Redis restarting) returns what the first try did instead of creating the runs twice
  local memo = s(a.token) and k("tok:" .. a.token)
  if memo then
    local first = redis.call("GET", memo)
    if first then
      -- [reply, runs it admitted for the caller to send, runs whose messages it wrote]: the
      -- written ones are reported as not written, for the caller to send (a second message
      -- for a run is harmless: a start admits one attempt)
      local r = cjson.decode(first)
      if not TAKE then return r[1] end
      return {r[1], r[2], "[]", r[3]}
    end
  end
  local ids, cached_out = {}, {}
  local subqueues = {}
  for _, r in ipairs(a.runs) do
    local cached = nil
    if s(r.idempotency_key) then
      local ik = k("idem:" .. enc(r.task) .. ":" .. enc(r.idempotency_key))
      -- "run id|expires at": the key's own clock decides (the PX only collects garbage)
      local existing = redis.call("GET", ik)
      local eid, eat = nil, nil
      if existing then eid, eat = string.match(existing, "^(.*)|([^|]*)$") end
      if eid and tonumber(eat) > now and redis.call("EXISTS", rk(eid)) == 1 then
        cached = eid
      else
        local ttl_ms = math.max(1, math.floor((r.idempotency_key_expires_at - now) * 1000))
        redis.call("SET", ik, r.id .. "|" .. r.idempotency_key_expires_at, "PX", ttl_ms)
      end
    end
    if cached then
      ids[#ids + 1] = cached
      cached_out[#cached_out + 1] = {#ids, cached, get(cached, "status"), get(cached, "queue")}
    else
      local number = redis.call("INCR", k("n:task:" .. enc(r.task)))
      local id = r.id
      local ckey = s(r.concurrency_key) or ""
      if r.queue_defined then upsert_queue(r.queue, r.queue_limit, r.queue_total_limit, true) end
      -- admitted as it is created (its slot in its hash), or left to wait in its sub-queue
      local qk, sqk = false, nil
      if r.status == "QUEUED" then qk, sqk = admits_at_once(r.queue, ckey, now, env_limit) end
      -- a new hash: only the fields that have a value (HSET name value ...)
      local flat = {"id", id, "task", r.task, "status", r.status, "seed_metadata", r.metadata,
                    "tags", #r.tags == 0 and "[]" or cjson.encode(r.tags),
                    "created_at", N(r.created_at), "updated_at", N(now), "depth", N(r.depth),
                    "queue", r.queue, "ckey", ckey, "number", N(number),
                    "is_test", r.is_test and "1" or "0", "attempt_count", "0",
                    "duration_ms", "0", "admitted", qk and "1" or "0", "resume", "0",
                    "queue_given", r.queue_given and "1" or "0"}
      if qk then
        flat[#flat + 1] = "holds_queue"
        flat[#flat + 1] = "1"
        flat[#flat + 1] = "holds_env"
        flat[#flat + 1] = "1"
      end
      for i = 1, #OPTIONAL do  -- written out: ipairs and a helper cost a call each, every field
        local name = OPTIONAL[i]
        local v = r[name]
        if v ~= nil and v ~= NULL and v ~= false then
          flat[#flat + 1] = name
          flat[#flat + 1] = N(v)
        end
      end
      if #r.payload > 524288 then
        redis.call("SET", k("blob:" .. id .. ":payload"), r.payload)
        flat[#flat + 1], flat[#flat + 2] = "payload_blob", "1"
      else
        flat[#flat + 1], flat[#flat + 2] = "payload", r.payload
      end
      if r.status ~= "DELAYED" then
        local at = N(now)
        flat[#flat + 1], flat[#flat + 2], flat[#flat + 3], flat[#flat + 4] =
          "queued_at", at, "queue_ts", at
      end
      redis.call("HSET", rk(id), unpack(flat))
      redis.call("ZADD", k("ix:st:" .. r.status), "0", id)
      index_run(id, r)
      if s(r.parent_id) then redis.call("SADD", k("children:" .. r.parent_id), id) end
      if r.status == "DELAYED" then
        redis.call("ZADD", k("delayed"), r.delay_until, id)
      else
        if s(r.ttl) then redis.call("ZADD", k("ttl"), now + r.ttl, id) end
        if qk then
          count_slots(1, qk, sqk)
          KNOWN[id] = {id, r.task, r.queue, s(r.machine) or NULL}
          handoff(id)
        elseif r.status == "QUEUED" then
          enqueue(id, now, r.queue, ckey)
          subqueues[#subqueues + 1] = {r.queue, ckey}
        else
          redis.call("SADD", k("wfd:" .. enc(r.task)), id)
        end
      end
      publish(id, r.status, now)
      ids[#ids + 1] = id
    end
  end
  if s(a.batch_id) then
    redis.call("HSET", k("batch:" .. a.batch_id), "run_ids", cjson.encode(ids),
               "created_at", now, "parent_id", s(a.parent_id) or "")
  end
  if s(a.wait) then create_waitpoint(a.wait, ids, now) end
  admit_new(now, env_limit, subqueues)
  local out, taken = json_list(cached_out), nil
  if memo then
    if TAKE then taken = json_list(dispatches(TAKEN)) end
    -- kept two minutes: a trigger retries for at most a minute (store_retry_timeout)
    redis.call("SET", memo, cjson.encode({out, taken or "[]", json_list(PUSHED)}), "PX", 120000)
  end
  return reply(out, taken)

elseif cmd == "register_tasks" then
  local queues = {}
  for _, t in ipairs(a.tasks) do
    redis.call("HSET", k("tasks"), t.id, t.queue)
    upsert_queue(t.queue, t.limit, t.total, true)
    queues[#queues + 1] = t.queue
    local wk = k("wfd:" .. enc(t.id))
    for _, id in ipairs(redis.call("SMEMBERS", wk)) do
      if get(id, "status") == "WAITING_FOR_DEPLOY" then
        if get(id, "queue_given") ~= "1" and get(id, "queue") ~= t.queue then
          -- the task's own queue, unless the trigger chose one
          redis.call("ZREM", k("ix:q:" .. enc(get(id, "queue"))), id)
          redis.call("ZADD", k("ix:q:" .. enc(t.queue)), 0, id)
          redis.call("HSET", rk(id), "queue", t.queue)
        end
        set_status(id, "QUEUED", now)
        enqueue(id, now)
        queues[#queues + 1] = get(id, "queue")
      end
    end
    redis.call("DEL", wk)
  end
  admit_after(now, env_limit, queues)
  return "1"

elseif cmd == "promote_due" then
  local n = 0
  local queues = {}
  for _, id in ipairs(redis.call("ZRANGEBYSCORE", k("delayed"), "-inf", now, "LIMIT", 0, a.limit)) do
    redis.call("ZREM", k("delayed"), id)
    if get(id, "status") == "DELAYED" then
      local q = queue_or_wait(id, now)
      if q then queues[#queues + 1] = q end
      n = n + 1
    end
  end
  for _, id in ipairs(redis.call("ZRANGEBYSCORE", k("retry"), "-inf", now, "LIMIT", 0, a.limit)) do
    redis.call("ZREM", k("retry"), id)
    if get(id, "status") == "REATTEMPTING" then
      set_status(id, "QUEUED", now)
      redis.call("HDEL", rk(id), "retry_at")
      enqueue(id, now)
      queues[#queues + 1] = get(id, "queue")
      n = n + 1
    end
  end
  for _, ref in ipairs(redis.call("ZRANGEBYSCORE", k("twaits"), "-inf", now, "LIMIT", 0, a.limit)) do
    redis.call("ZREM", k("twaits"), ref)
    local run_id, attempt, idx = string.match(ref, "^(.-)|(%d+)|(%d+)$")
    resolve(run_id, tonumber(attempt), tonumber(idx), now)
    n = n + 1
  end
  -- pauses that have ended
  for _, q in ipairs(redis.call("SMEMBERS", k("queues"))) do
    local qk = k("queue:" .. enc(q))
    local h = redis.call("HMGET", qk, "paused", "until")
    if h[1] == "1" and h[2] and tonumber(h[2]) <= now then
      redis.call("HSET", qk, "paused", 0)
      redis.call("HDEL", qk, "until")
      queues[#queues + 1] = q
    end
  end
  for _, m in ipairs(redis.call("SMEMBERS", k("pausedkeys"))) do
    local pair = cjson.decode(m)
    local sqk = k("sq:" .. enc(pair[1]) .. ":" .. enc(pair[2]))
    local h = redis.call("HMGET", sqk, "paused", "until")
    if h[1] ~= "1" then
      redis.call("SREM", k("pausedkeys"), m)
    elseif h[2] and tonumber(h[2]) <= now then
      redis.call("HSET", sqk, "paused", 0)
      redis.call("HDEL", sqk, "until")
      redis.call("SREM", k("pausedkeys"), m)
      queues[#queues + 1] = pair[1]
    end
  end
  admit_after(now, env_limit, queues)
  return tostring(n)

elseif cmd == "expire_runs" then
  local ids = redis.call("ZRANGEBYSCORE", k("ttl"), "-inf", now, "LIMIT", 0, a.limit)
  local expired, queues = {}, {}
  for _, id in ipairs(ids) do
    redis.call("ZREM", k("ttl"), id)
    local st = get(id, "status")
    if (st == "QUEUED" or st == "WAITING_FOR_DEPLOY") and not get(id, "started_at") then
      local q = leave(id)
      if q then queues[#queues + 1] = q end
      local ttl = num(id, "ttl") or 0
      set_status(id, "EXPIRED", now)
      local msg = "Run expired because the TTL (" .. fmt_duration(ttl) .. ") was reached"
      hset(id, {expired_at = now, finished_at = now, admitted = 0,
                error = cjson.encode({name = "Error", code = "TTL_EXPIRED", message = msg})})
      finish_final(id, now)
      expired[#expired + 1] = id
    end
  end
  finalized(expired, now)
  admit_after(now, env_limit, queues)
  return json_list(expired)

elseif cmd == "start_attempt" then
  local st, h, md_set = start(a.run_id, a.worker_id, a.known, a.lease_until,
                              a.default_max_attempts, a.attempt_id)
  if not st then return "null" end
  -- one JSON document: decoding it is C code in Python, where a reply array of ~60 strings
  -- would be parsed element by element (several times the client's CPU)
  return started_json(a.run_id, st, h, md_set, "")

elseif cmd == "fetch_start" then
  -- the native broker's reliable fetch and start_attempt in one call: pop deliveries of the
  -- worker's tasks into its in-flight hash and start their attempts; runs that cannot start
  -- (canceled, taken) are dropped; deliveries for queues the worker does not serve go back.
  -- Returns [[[delivery, started, run fields (name -> value), metadata], ...], more] where
  -- more is true when it stopped for want of attempt ids with deliveries possibly left.
  local w = a.worker_id
  redis.call("SET", k("wk:" .. w), "1", "PX", a.heartbeat_ms)
  redis.call("SADD", k("workers"), w)
  local inflight = k("inflight:" .. w)
  local queues = nil
  if a.queues ~= NULL then
    queues = {}
    for _, q in ipairs(a.queues) do queues[q] = true end
  end
  local known = {}
  for _, t in ipairs(a.tasks) do known[t] = true end
  local out = {}
  local n_ids = 0
  for _, task in ipairs(a.tasks) do
    local list = k("bq:" .. enc(task))
    local skipped = 0
    local len = nil
    while #out < a.max do
      local msg = redis.call("LPOP", list)
      if not msg then break end
      local d = cjson.decode(msg)
      if queues and not queues[d[3]] then
        redis.call("RPUSH", list, msg)  -- another worker's queue: back to the end
        skipped = skipped + 1
        len = len or redis.call("LLEN", list)
        if skipped >= len then break end
      else
        n_ids = n_ids + 1
        local st, h, md_set = start(d[1], w, known, a.lease_until, a.defaults[task] or 1,
                                    a.attempt_ids[n_ids])
        if st then
          redis.call("HSET", inflight, d[1], msg)
          out[#out + 1] = started_json(d[1], st, h, md_set, cjson.encode(msg) .. ",")
        end
        if n_ids >= #a.attempt_ids then break end
      end
    end
    if #out >= a.max or n_ids >= #a.attempt_ids then break end
  end
  return "[[" .. table.concat(out, ",") .. "]," .. tostring(n_ids >= #a.attempt_ids) .. "]"

elseif cmd == "finish_attempt" then
  -- (its arguments are plain: each unset one nil, never cjson's null)
  local id, n = a.run_id, N(a.attempt)
  local key = rk(id)
  settle(id)
  local r = redis.call("HMGET", key, "status", "attempt_count", "duration_ms",
                       "segment_started_at", unpack(SLOT))
  if r[1] ~= "EXECUTING" or r[2] ~= n then
    release_stopped(id, r[1], r[2], a.attempt)  -- canceled before the worker stopped it
    return reply("0")
  end
  local o = a.outcome
  local ak = k("att:" .. id)
  -- the attempt's record: written from what the caller knows of it (a.record, its duration
  -- when it started a.used_ms), else read and rewritten (a caller that did not start it)
  local at, used = nil, a.used_ms
  if not a.record then
    local raw = redis.call("HGET", ak, n)
    at = raw and cjson.decode(raw) or nil
    used = (at and at.duration_ms) or 0
  end
  local elapsed  -- execution time of this stretch: the attempt's own measure when given
  if o.attempt_ms == nil then
    elapsed = r[4] and math.max(0, math.floor((now - tonumber(r[4])) * 1000)) or 0
  else
    elapsed = o.attempt_ms - used
    if elapsed < 0 then elapsed = 0 end
  end
  -- fields appended in place: the values are the caller's text, now N()'s
  local sets = {"status", o.run_status, "updated_at", N(now), "admitted", "0",
                "duration_ms", N(tonumber(r[3] or "0") + elapsed)}
  local dels = {"segment_started_at", "lease_until"}
  if o.output then
    if #o.output > 524288 then
      redis.call("SET", k("blob:" .. id .. ":output"), o.output)
      sets[#sets + 1], sets[#sets + 2] = "output_blob", "1"
      dels[#dels + 1] = "output"
    else
      sets[#sets + 1], sets[#sets + 2] = "output", o.output
    end
  end
  if o.error then sets[#sets + 1], sets[#sets + 2] = "error", o.error
  elseif o.run_status == "COMPLETED" then dels[#dels + 1] = "error" end
  if FINAL[o.run_status] then sets[#sets + 1], sets[#sets + 2] = "finished_at", N(now) end
  if o.retry_at then sets[#sets + 1], sets[#sets + 2] = "retry_at", o.retry_at end
  if o.machine then sets[#sets + 1], sets[#sets + 2] = "machine", o.machine end
  redis.call("HSET", key, unpack(sets))
  local q, freed_ck = release(id, false, slot_of(r, 5), dels)
  redis.call("HDEL", key, unpack(dels))
  redis.call("ZREM", k("leases"), id)
  move_status(id, o.run_status, now, "EXECUTING")
  if a.record then
    redis.call("HSET", ak, n, a.record .. N(used + elapsed) .. "}")
  elseif at then
    at.status = o.attempt_status
    at.finished_at = now
    at.error = o.error and cjson.decode(o.error) or NULL
    at.duration_ms = (at.duration_ms or 0) + elapsed
    redis.call("HSET", ak, n, cjson.encode(at))
  end
  if o.run_status == "REATTEMPTING" then
    redis.call("ZADD", k("retry"), o.retry_at, id)
  end
  if FINAL[o.run_status] then
    -- an EXECUTING run is in no time index (start took it out of ttl; the lease went above)
    retain(id, now)
    finalized({id}, now)
  end
  admit_after(now, env_limit, {}, q and {q, freed_ck or ""} or nil)
  return reply("1")

elseif cmd == "transition" then
  local id = a.run_id
  local st = get(id, "status")
  local ok = false
  for _, e in ipairs(a.expect) do if e == st then ok = true end end
  if not st or not ok then return "0" end
  local queues = {}
  if FINAL[a.to] then
    local q = leave(id)
    if q then queues[1] = q end
    a.changes.admitted = 0
    a.changes.finished_at = a.changes.finished_at or now
  end
  hset(id, a.changes)
  if a.changes.delay_until and a.to == "DELAYED" then
    redis.call("ZADD", k("delayed"), a.changes.delay_until, id)
  end
  set_status(id, a.to, now)
  if FINAL[a.to] then
    finish_final(id, now)
    finalized({id}, now)
  end
  admit_after(now, env_limit, queues)
  return "1"

elseif cmd == "suspend" then
  local id = a.run_id
  settle(id)
  local cur = redis.call("HMGET", rk(id), "status", "attempt_count")
  if cur[1] ~= "EXECUTING" or cur[2] ~= N(a.attempt) then
    release_stopped(id, cur[1], cur[2], a.attempt)  -- canceled before the worker stopped it
    return reply("null")
  end
  local elapsed = executed_ms(id, a.attempt, now, a.attempt_ms)
  local q = release(id, true)
  local resolved = is_resolved(id, a.attempt, a.index, now)
  local status = "FROZEN"
  if resolved then status = "QUEUED" end
  hset(id, {duration_ms = tonumber(get(id, "duration_ms") or "0") + elapsed,
            segment_started_at = false, lease_until = false, admitted = 0,
            resume = resolved and 1 or 0, wait_index = (not resolved) and a.index or false})
  redis.call("ZREM", k("leases"), id)
  local at = cjson.decode(redis.call("HGET", k("att:" .. id), tostring(a.attempt)))
  at.status = "SUSPENDED"
  at.duration_ms = (at.duration_ms or 0) + elapsed
  redis.call("HSET", k("att:" .. id), tostring(a.attempt), cjson.encode(at))
  set_status(id, status, now)
  if resolved then
    redis.call("SREM", k("lenders"), id)
    redis.call("ZADD", k("resumeq"), num(id, "queue_ts") or now, id)
    RESUMED = true
  end
  local queues = {}
  if q then queues[1] = q end
  admit_after(now, env_limit, queues)
  return reply(cjson.encode(status))

elseif cmd == "take_ready" then
  return json_list(take_outbox(a.limit))

elseif cmd == "cancel" then
  local root = a.run_id
  local st = get(root, "status")
  if not st then return "null" end
  if FINAL[st] then return "1" end
  local todo, canceled, queues = {root}, {}, {}
  while #todo > 0 do
    local id = table.remove(todo)
    local cur = get(id, "status")
    if cur and not FINAL[cur] then
      -- an executing attempt keeps its slots (and lease) until it has stopped
      if cur ~= "EXECUTING" then
        local q = leave(id)
        if q then queues[#queues + 1] = q end
        redis.call("HDEL", rk(id), "lease_until")
        redis.call("ZREM", k("leases"), id)
      else
        redis.call("SADD", k("draining"), id)
      end
      hset(id, {error = a.error, finished_at = now, resume = 0, wait_index = false,
                admitted = 0})
      set_status(id, "CANCELED", now)
      remove_from_time_index_keep_lease(id)
      retain(id, now)
      local n = tonumber(get(id, "attempt_count") or "0")
      if n > 0 then
        local raw = redis.call("HGET", k("att:" .. id), tostring(n))
        if raw then
          local at = cjson.decode(raw)
          if at.status == "EXECUTING" or at.status == "SUSPENDED" then
            at.status = "CANCELED"
            at.finished_at = now
            at.error = cjson.decode(a.error)
            redis.call("HSET", k("att:" .. id), tostring(n), cjson.encode(at))
          end
        end
      end
      canceled[#canceled + 1] = id
      for _, child in ipairs(redis.call("SMEMBERS", k("children:" .. id))) do
        todo[#todo + 1] = child
      end
    end
  end
  finalized(canceled, now)
  admit_after(now, env_limit, queues)
  return "1"

elseif cmd == "release_canceled" then
  local id = a.run_id
  local cur = redis.call("HMGET", rk(id), "status", "attempt_count")
  if cur[1] ~= "CANCELED" or cur[2] ~= tostring(a.attempt) then return "0" end
  release_stopped(id, cur[1], cur[2], a.attempt)
  return reply("1")

elseif cmd == "heartbeat" then
  local lost = {}
  for id, n in pairs(a.attempts) do
    if get(id, "status") == "EXECUTING" and get(id, "attempt_count") == tostring(n)
        and (num(id, "lease_until") or 0) >= now then
      redis.call("HSET", rk(id), "lease_until", a.lease_until)
      redis.call("ZADD", k("leases"), a.lease_until, id)
    else
      lost[#lost + 1] = id
    end
  end
  return json_list(lost)

elseif cmd == "reap" then
  local ids = redis.call("ZRANGEBYSCORE", k("leases"), "-inf", "(" .. now, "LIMIT", 0, a.limit)
  local reaped, finals, queues = {}, {}, {}
  for _, id in ipairs(ids) do
    redis.call("ZREM", k("leases"), id)
    if get(id, "status") == "CANCELED" and redis.call("SREM", k("draining"), id) == 1 then
      -- canceled while executing, and its worker never reported back: free the slots
      local q = release(id, false)
      if q then queues[#queues + 1] = q end
      redis.call("HDEL", rk(id), "lease_until")
    elseif get(id, "status") == "EXECUTING" and (num(id, "lease_until") or 0) < now then
      local n = tonumber(get(id, "attempt_count"))
      local worker = get(id, "worker_id")
      local why = "stopped renewing its lease"
      if a.handed_back_by and worker == a.handed_back_by then
        why = "handed it back on shutdown"
      end
      local err = cjson.encode({name = "WorkerCrashedError", code = "TASK_RUN_CRASHED",
        message = "the worker executing attempt " .. n .. " (" .. (worker or "?") .. ") " .. why})
      local retry = n < tonumber(get(id, "attempts_allowed") or "1")
      local q = release(id, false)
      if q then queues[#queues + 1] = q end
      hset(id, {error = err, duration_ms = tonumber(get(id, "duration_ms") or "0")
                  + segment_ms(id, now), segment_started_at = false, lease_until = false,
                admitted = 0, retry_at = retry and now or false,
                finished_at = (not retry) and now or false})
      attempt_update(id, n, {status = "CRASHED", finished_at = now, error = cjson.decode(err)})
      if retry then
        set_status(id, "REATTEMPTING", now)
        redis.call("ZADD", k("retry"), now, id)
      else
        set_status(id, "CRASHED", now)
        finish_final(id, now)
        finals[#finals + 1] = id
      end
      reaped[#reaped + 1] = id
    end
  end
  finalized(finals, now)
  admit_after(now, env_limit, queues)
  return json_list(reaped)

elseif cmd == "purge" then
  -- finished runs past their retention: the run and everything about it, index entries too
  local ids = redis.call("ZRANGEBYSCORE", k("gc"), "-inf", now, "LIMIT", 0, a.limit)
  for _, id in ipairs(ids) do
    redis.call("ZREM", k("gc"), id)
    local h = redis.call("HGETALL", rk(id))
    local r = {}
    for i = 1, #h, 2 do r[h[i]] = h[i + 1] end
    if r.status and FINAL[r.status] then
      redis.call("ZREM", k("ix:all"), id)
      redis.call("ZREM", k("ix:st:" .. r.status), id)
      redis.call("ZREM", k("ix:task:" .. enc(r.task)), id)
      redis.call("ZREM", k("ix:q:" .. enc(r.queue)), id)
      for _, tag in ipairs(cjson.decode(r.tags or "[]")) do
        redis.call("ZREM", k("ix:tag:" .. enc(tag)), id)
      end
      if r.batch_id then redis.call("ZREM", k("ix:batch:" .. r.batch_id), id) end
      if r.schedule_id then redis.call("ZREM", k("ix:sched:" .. r.schedule_id), id) end
      if r.version then redis.call("ZREM", k("ix:ver:" .. enc(r.version)), id) end
      if r.parent_id then
        redis.call("ZREM", k("ix:parent:" .. r.parent_id), id)
        redis.call("SREM", k("children:" .. r.parent_id), id)
      end
      if r.idempotency_key then
        local ik = k("idem:" .. enc(r.task) .. ":" .. enc(r.idempotency_key))
        local v = redis.call("GET", ik)
        if v and string.sub(v, 1, #id + 1) == id .. "|" then redis.call("DEL", ik) end
      end
      for n = 1, tonumber(r.attempt_count or "0") do
        redis.call("DEL", k("wp:" .. id .. ":" .. n), k("wpn:" .. id .. ":" .. n),
                   k("wpr:" .. id .. ":" .. n))
      end
      redis.call("DEL", rk(id), k("att:" .. id), k("md:" .. id), k("logs:" .. id),
                 k("children:" .. id), k("ix:parent:" .. id),
                 k("blob:" .. id .. ":payload"), k("blob:" .. id .. ":output"))
    end
  end
  return tostring(#ids)

elseif cmd == "create_waitpoint" then
  create_waitpoint(a.wait, {}, now)
  return "1"

elseif cmd == "set_paused" then
  if redis.call("SISMEMBER", k("queues"), a.queue) == 0 then return "0" end
  if s(a.key) then
    local sqk = k("sq:" .. enc(a.queue) .. ":" .. enc(a.key))
    local m = sq_member(a.queue, a.key)
    if a.paused then
      redis.call("HSET", sqk, "paused", 1)
      if s(a["until"]) then redis.call("HSET", sqk, "until", a["until"])
      else redis.call("HDEL", sqk, "until") end
      redis.call("SADD", k("pausedkeys"), m)
    else
      redis.call("HSET", sqk, "paused", 0)
      redis.call("HDEL", sqk, "until")
      redis.call("SREM", k("pausedkeys"), m)
    end
  else
    local qk = k("queue:" .. enc(a.queue))
    if a.paused then
      redis.call("HSET", qk, "paused", 1)
      if s(a["until"]) then redis.call("HSET", qk, "until", a["until"])
      else redis.call("HDEL", qk, "until") end
    else
      redis.call("HSET", qk, "paused", 0)
      redis.call("HDEL", qk, "until")
    end
  end
  if not a.paused then admit_after(now, env_limit, {a.queue}) end
  return "1"

elseif cmd == "add_tags" then
  local id = a.run_id
  local raw = get(id, "tags")
  if not raw then return "null" end
  local current = cjson.decode(raw)
  local have = {}
  for _, t in ipairs(current) do have[t] = true end
  local fresh = {}
  for _, t in ipairs(a.tags) do
    if not have[t] then have[t] = true fresh[#fresh + 1] = t end
  end
  if #fresh > 0 and #current + #fresh <= a.max then
    for _, t in ipairs(fresh) do
      current[#current + 1] = t
      redis.call("ZADD", k("ix:tag:" .. enc(t)), 0, id)
    end
    redis.call("HSET", rk(id), "tags", cjson.encode(current), "updated_at", now)
  end
  return json_list(current)

elseif cmd == "acquire_lease" then
  local key = k("lease:" .. a.name)
  local owner = redis.call("GET", key)
  if owner == false or owner == a.owner then
    redis.call("SET", key, a.owner, "PX", a.ttl_ms)
    return "1"
  end
  return "0"

elseif cmd == "release_lease" then
  local key = k("lease:" .. a.name)
  if redis.call("GET", key) == a.owner then redis.call("DEL", key) end
  return "1"

elseif cmd == "list_runs" then
  -- walk the most selective index backwards from the cursor, checking the other filters
  local src = k(a.index)
  local max, min = a.max, a.min
  local out = {}
  local offset = 0
  local scanned = 0
  while #out <= a.limit and scanned < 100000 do
    local ids = redis.call("ZREVRANGEBYLEX", src, max, min, "LIMIT", offset, 500)
    if #ids == 0 then break end
    offset = offset + #ids
    for _, id in ipairs(ids) do
      scanned = scanned + 1
      local ok = true
      for _, f in ipairs(a.checks) do
        local kind, values = f[1], f[2]
        local hit = false
        if kind == "index" then
          for _, ix in ipairs(values) do
            if redis.call("ZSCORE", k(ix), id) then hit = true break end
          end
        else
          local v = get(id, kind)
          for _, want in ipairs(values) do if v == want then hit = true break end end
        end
        if not hit then ok = false break end
      end
      if ok then
        out[#out + 1] = id
        if #out > a.limit then break end
      end
    end
  end
  return json_list(out)
end

return redis.error_reply("runlane: unknown store command " .. tostring(cmd))
