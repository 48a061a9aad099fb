-- create_runs: create runs (args.runs, NewRuns as JSON), each admitted at once when its
-- sub-queue lets it, else left waiting; optionally as a batch (args.batch_id), awaited by
-- a waitpoint of the parent (args.wait), or as schedules' ticks (args.fires, one a run: see
-- fire_guard; the reply is then {"skipped": [positions of the ticks fired already]}). args.token names the call, so that trying it again
-- after its reply was lost (a connection reset, Redis restarting) returns what the first try
-- did instead of creating the runs twice. Reply: [index, id, status, queue] of the runs an
-- idempotency key answered with an existing one (the caller knows what it created).

-- fields of a new run stored under their own name when the trigger gave them, besides
-- GIVEN_VALUES and GIVEN_FLAGS (defined before this file, from runlane/core/types.py)
local OPTIONAL = {"ttl", "delay_until", "max_duration", "trace_context"}

local function index_run(id, new)
  redis.call("ZADD", key("ix:all"), "0", id)
  redis.call("ZADD", key("ix:task:" .. enc(new.task)), "0", id)
  redis.call("ZADD", key("ix:q:" .. enc(new.queue)), "0", id)
  for _, tag in ipairs(new.tags) do redis.call("ZADD", key("ix:tag:" .. enc(tag)), 0, id) end
  if given(new.batch_id) then redis.call("ZADD", key("ix:batch:" .. new.batch_id), 0, id) end
  if given(new.schedule_id) then
    redis.call("ZADD", key("ix:sched:" .. new.schedule_id), 0, id)
  end
  if given(new.version) then redis.call("ZADD", key("ix:ver:" .. enc(new.version)), 0, id) end
  if given(new.parent_id) then redis.call("ZADD", key("ix:parent:" .. new.parent_id), 0, id) end
end

local function admits_at_once(queue, ckey, at, limit)
  -- whether a run about to be created QUEUED in sub-queue (queue, ckey) takes its slots at
  -- once: nothing waits there, neither queue nor key is paused, the key has room, and no
  -- total or environment limit makes sub-queues compete (what admit() would do, without
  -- passing through the waiting set and the round robin, which only order competing
  -- sub-queues). Returns the queue's and the sub-queue's keys then (the caller creates the
  -- run with its slot and calls count_slots), else false
  if limit ~= nil and limit ~= NULL then return false end
  local encoded = enc(queue)
  local queue_key = key("queue:" .. encoded)
  local queue_state = redis.call("HMGET", queue_key, "limit", "total", "paused", "until",
                                  "running")
  if queue_state[2] or (queue_state[3] and paused(queue_state[3], queue_state[4], at)) then
    return false
  end
  local sub = encoded .. ":" .. enc(ckey)
  local sub_key = key("sq:" .. sub)
  local sub_state = redis.call("HMGET", sub_key, "running", "paused", "until")
  if sub_state[2] and paused(sub_state[2], sub_state[3], at) then return false end
  local queue_limit = queue_state[1] and tonumber(queue_state[1]) or nil
  if queue_limit ~= nil and tonumber(sub_state[1] or "0") >= queue_limit then return false end
  if redis.call("EXISTS", key("sqw:" .. sub)) == 1 then return false end
  if not queue_state[5] then upsert_queue(queue, nil, nil, false) end
  return queue_key, sub_key
end

local function admit_new(at, limit, subqueues)
  -- runs were just queued in these sub-queues ({queue, ckey} pairs): admission looks at those
  -- sub-queues alone, at the whole queue when its keys share a total limit, and at every
  -- queue under an environment cap (they all compete for its slots)
  if #subqueues == 0 then return 0 end
  if limit ~= nil and limit ~= NULL then return admit(at, limit, nil) end
  local set, has_total, seen = {}, {}, {}
  local any_set, admitted = false, 0
  for _, subqueue in ipairs(subqueues) do
    local queue = subqueue[1]
    if has_total[queue] == nil then
      has_total[queue] = redis.call("HEXISTS", key("queue:" .. enc(queue)), "total") == 1
    end
    if has_total[queue] then
      set[queue] = true
      any_set = true
    else
      local member = sq_member(queue, subqueue[2])
      if not seen[member] then
        seen[member] = true
        admitted = admitted + admit(at, limit, {}, member)
      end
    end
  end
  if any_set then admitted = admitted + admit(at, limit, set) end
  return admitted
end

local function existing_run(new)
  -- the run its idempotency key names, if the key is live; else the key now names new.id
  local idem_key = key("idem:" .. enc(new.task) .. ":" .. enc(new.idempotency_key))
  -- "run id|expires at": the key's own clock decides (the PX only collects garbage)
  local existing = redis.call("GET", idem_key)
  local id, expires_at = nil, nil
  if existing then id, expires_at = string.match(existing, "^(.*)|([^|]*)$") end
  if id and tonumber(expires_at) > now and redis.call("EXISTS", run_key(id)) == 1 then
    return id
  end
  local ttl_ms = math.max(1, math.floor((new.idempotency_key_expires_at - now) * 1000))
  redis.call("SET", idem_key, new.id .. "|" .. new.idempotency_key_expires_at, "PX", ttl_ms)
  return nil
end

local function create(new, subqueues)
  -- the run, admitted at once or waiting in its sub-queue (then appended to subqueues)
  local id = new.id
  local number = redis.call("INCR", key("n:task:" .. enc(new.task)))
  local ckey = given(new.concurrency_key) or ""
  if new.queue_defined then
    upsert_queue(new.queue, new.queue_limit, new.queue_total_limit, true)
  end
  -- admitted as it is created (its slot in its hash), or left to wait in its sub-queue
  local queue_key, sub_key = false, nil
  if new.status == "QUEUED" then
    queue_key, sub_key = admits_at_once(new.queue, ckey, now, env_limit)
  end
  -- a new hash: only the fields that have a value (HSET name value ...)
  local fields = {"id", id, "task", new.task, "status", new.status,
                  "seed_metadata", new.metadata,
                  "tags", #new.tags == 0 and "[]" or cjson.encode(new.tags),
                  "created_at", as_text(new.created_at), "updated_at", as_text(now),
                  "queue", new.queue, "ckey", ckey, "number", as_text(number),
                  "attempt_count", "0", "duration_ms", "0",
                  "admitted", queue_key and "1" or "0", "resume", "0",
                  "queue_given", new.queue_given and "1" or "0"}
  if queue_key then
    fields[#fields + 1] = "holds_queue"
    fields[#fields + 1] = "1"
    fields[#fields + 1] = "holds_env"
    fields[#fields + 1] = "1"
  end
  for i = 1, #OPTIONAL do
    local name = OPTIONAL[i]
    local v = new[name]
    if v ~= nil and v ~= NULL and v ~= false then
      fields[#fields + 1] = name
      fields[#fields + 1] = as_text(v)
    end
  end
  for i = 1, #GIVEN_VALUES do
    local name = GIVEN_VALUES[i]
    local v = new[name]
    if v ~= nil and v ~= NULL then
      fields[#fields + 1] = name
      fields[#fields + 1] = as_text(v)
    end
  end
  for i = 1, #GIVEN_FLAGS do
    local name = GIVEN_FLAGS[i]
    fields[#fields + 1] = name
    fields[#fields + 1] = new[name] == true and "1" or "0"
  end
  if #new.payload > 524288 then
    redis.call("SET", key("blob:" .. id .. ":payload"), new.payload)
    fields[#fields + 1], fields[#fields + 2] = "payload_blob", "1"
  else
    fields[#fields + 1], fields[#fields + 2] = "payload", new.payload
  end
  if new.status ~= "DELAYED" then
    local at = as_text(now)
    fields[#fields + 1], fields[#fields + 2], fields[#fields + 3], fields[#fields + 4] =
      "queued_at", at, "queue_ts", at
  end
  redis.call("HSET", run_key(id), unpack(fields))
  redis.call("ZADD", key("ix:st:" .. new.status), "0", id)
  index_run(id, new)
  if given(new.parent_id) then redis.call("SADD", key("children:" .. new.parent_id), id) end
  if new.status == "DELAYED" then
    redis.call("ZADD", key("delayed"), new.delay_until, id)
  else
    if given(new.ttl) then redis.call("ZADD", key("ttl"), now + new.ttl, id) end
    if queue_key then
      count_slots(1, queue_key, sub_key)
      KNOWN[id] = {id, new.task, new.queue, given(new.machine) or NULL}
      handoff(id)
    elseif new.status == "QUEUED" then
      enqueue(id, now, new.queue, ckey)
      subqueues[#subqueues + 1] = {new.queue, ckey}
    else
      redis.call("SADD", key("wfd:" .. enc(new.task)), id)
    end
  end
  publish(id)
end

local function fire_guard(fire)
  -- a run that is a schedule's tick (args.fires): created only while the schedule is active
  -- at the tick the caller expects; it then records the tick as fired and moves on
  local schedule_key = key("sch:" .. fire.schedule_id)
  local state = redis.call("HMGET", schedule_key, "active", "next_at")
  if state[1] ~= "1" or tonumber(state[2]) ~= fire.expect then return false end
  local next_at = as_text(fire.next_at)
  redis.call("HSET", schedule_key, "last_at", as_text(fire.tick), "next_at", next_at)
  redis.call("ZADD", key("schdue"), next_at, fire.schedule_id)
  return true
end

local function create_runs()
  local memo = given(args.token) and key("tok:" .. args.token)
  if memo then
    local first = redis.call("GET", memo)
    if first then
      -- [reply, runs it admitted for the caller to send, runs whose messages it wrote]: the
      -- written ones are reported as not written, for the caller to send (a second message
      -- for a run is harmless: a start admits one attempt)
      local replied = cjson.decode(first)
      if not TAKE then return replied[1] end
      return {replied[1], replied[2], "[]", replied[3]}
    end
  end
  local fires = given(args.fires)
  local ids, cached, skipped = {}, {}, {}
  local subqueues = {}
  for position, new in ipairs(args.runs) do
    local existing = given(new.idempotency_key) and existing_run(new)
    if fires and not fire_guard(fires[position]) then
      skipped[#skipped + 1] = position
    elseif existing then
      ids[#ids + 1] = existing
      cached[#cached + 1] = {position, existing, get(existing, "status"), get(existing, "queue")}
    else
      create(new, subqueues)
      ids[#ids + 1] = new.id
    end
  end
  if given(args.batch_id) then
    redis.call("HSET", key("batch:" .. args.batch_id), "run_ids", cjson.encode(ids),
               "created_at", now, "parent_id", given(args.parent_id) or "")
  end
  if given(args.wait) then create_waitpoint(args.wait, ids, now) end
  admit_new(now, env_limit, subqueues)
  local out, taken = json_list(cached), nil
  if fires then out = '{"skipped":' .. json_list(skipped) .. '}' end
  if memo then
    if TAKE then taken = json_list(dispatches(TAKEN)) end
    -- kept two minutes: a trigger retries for at most a minute (store_retry_timeout)
    redis.call("SET", memo, cjson.encode({out, taken or "[]", json_list(PUSHED)}), "PX", 120000)
  end
  return reply(out, taken)
end

return create_runs
