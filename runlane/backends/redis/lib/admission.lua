-- runlane Redis store: admission. A QUEUED run waits in its sub-queue (its queue and
-- concurrency key) until it is admitted: it then holds a slot of the sub-queue, of its queue
-- (when the queue has a total limit) and of the environment, recorded in its hash
-- (holds_queue, holds_env), and goes to the broker. Sub-queues are served round robin (least
-- recently served first), FIFO within one; a FROZEN run keeps its queue slot and may lend it
-- to a child it waits on.

local function paused(flag, until_at, at)
  return flag == "1" and (until_at == false or until_at == nil or tonumber(until_at) > at)
end

local function sq_member(queue, ckey) return cjson.encode({queue, ckey}) end

local function handoff(id)
  -- an admitted run (its hash already says admitted 1) goes to the broker (see DIRECT)
  if DIRECT then
    local dispatch = KNOWN[id]
    if not dispatch then
      local fields = redis.call("HMGET", run_key(id), "task", "queue", "machine")
      dispatch = {id, fields[1], fields[2], fields[3] or NULL}
    end
    local task = enc(dispatch[2])
    redis.call("RPUSH", DIRECT .. "bq:" .. task, cjson.encode(dispatch))
    -- wake one worker blocked on this task's list (a bounded pile of tokens)
    local signals = DIRECT .. "sig:" .. task
    if redis.call("LLEN", signals) < 32 then redis.call("RPUSH", signals, 1) end
  elseif TAKE then
    if PUSH and PUSH[id] then PUSHED[#PUSHED + 1] = id
    else TAKEN[#TAKEN + 1] = id end
  else
    redis.call("RPUSH", key("ready"), id)
  end
end

local function count_slots(n, queue_key, sub_key)
  -- n runs took a slot of sub-queue sub_key, of its queue queue_key and of the environment;
  -- returns the environment's running count
  redis.call("HINCRBY", sub_key, "running", as_text(n))
  redis.call("HINCRBY", queue_key, "running", as_text(n))
  return counter("running", n)
end

local function grant(ids, queue_key, sub_key)
  -- these runs (waiting in sub-queue sub_key of queue queue_key) take a slot of it, of its
  -- queue and of the environment, and go to the broker; returns the environment's running count
  for _, id in ipairs(ids) do
    redis.call("HSET", run_key(id), "holds_queue", "1", "holds_env", "1", "admitted", "1")
    handoff(id)
  end
  return count_slots(#ids, queue_key, sub_key)
end

local function leave_waiting(id)
  local queue = get(id, "queue")
  local ckey = get(id, "ckey") or ""
  local waiting_key = key("sqw:" .. enc(queue) .. ":" .. enc(ckey))
  redis.call("ZREM", waiting_key, id)
  redis.call("ZREM", key("resumeq"), id)
  if redis.call("ZCARD", waiting_key) == 0 then
    redis.call("ZREM", key("rr"), sq_member(queue, ckey))
  end
end

local function lend(lender)
  -- a FROZEN run lends its queue slot to the oldest waiting child it waits on, same sub-queue
  local lender_key = run_key(lender)
  local run = redis.call("HMGET", lender_key, "status", "holds_queue", "lent_to", "queue",
                         "ckey", "attempt_count", "wait_index")
  if run[1] ~= "FROZEN" or not run[2] or run[3] then return false end
  local queue, ckey = run[4], run[5] or ""
  local queue_key = key("queue:" .. enc(queue))
  local sub_key = key("sq:" .. enc(queue) .. ":" .. enc(ckey))
  if redis.call("HGET", queue_key, "paused") == "1"
      or redis.call("HGET", sub_key, "paused") == "1" then
    return false
  end
  local function waiting_here(child)
    return get(child, "status") == "QUEUED" and get(child, "admitted") == "0"
      and get(child, "resume") ~= "1" and get(child, "queue") == queue
      and (get(child, "ckey") or "") == ckey
  end
  local best, best_ts = nil, nil
  -- first the runs it waits on (maybe not its children: a cached idempotent run) ...
  local attempt, index = run[6], run[7]
  local wait = index and redis.call("HGET", key("wp:" .. lender .. ":" .. attempt), index)
  if wait then
    for _, child in ipairs(cjson.decode(wait).run_ids) do
      if waiting_here(child) then
        local ts = num(child, "queue_ts") or 0
        if best == nil or ts < best_ts then best, best_ts = child, ts end
      end
    end
  end
  -- ... then any descendant (reached through runs on other queues)
  if not best then
    local ids = redis.call("ZRANGE", key("sqw:" .. enc(queue) .. ":" .. enc(ckey)), 0, 999)
    for _, child in ipairs(ids) do
      local current, depth = child, 0
      while current and depth < 256 do
        local parent = get(current, "parent_id")
        if parent == lender then best = child break end
        current, depth = parent, depth + 1
      end
      if best then break end
    end
  end
  if not best then return false end
  redis.call("HSET", run_key(best), "holds_queue", "0", "holds_env", "1",
             "borrowed_from", lender, "admitted", "1")
  redis.call("HSET", lender_key, "lent_to", best)
  leave_waiting(best)
  counter("running", 1)
  handoff(best)
  return true
end

local function admit(at, limit, queues, only)
  -- admits what may run now. limit: the environment's; queues: nil = every queue, else a set
  -- name -> true; only: just this sub-queue (its sq_member). Returns how many it admitted
  local admitted = 0
  local capped = limit ~= nil and limit ~= NULL
  local running = capped and counter("running", 0) or 0
  local function env_free()
    if not capped then return nil end
    local free = limit - running
    if free < 0 then return 0 end
    return free
  end
  -- 1. resumed runs keep their queue slot: they only need an environment slot. Without an
  -- environment cap a resumed run is admitted by the transition that resumed it, so a call
  -- for one freed sub-queue that resumed none has none to look for (an engine tick would
  -- find a stray one)
  local free = env_free()
  if (free == nil and (RESUMED or not only)) or (free ~= nil and free > 0) then
    local ids = redis.call("ZRANGE", key("resumeq"), 0, (free or 10000) - 1)
    for _, id in ipairs(ids) do
      redis.call("ZREM", key("resumeq"), id)
      redis.call("HSET", run_key(id), "holds_env", "1", "admitted", "1")
      running = counter("running", 1)
      admitted = admitted + 1
      handoff(id)
    end
  end
  -- 2. sub-queues, round robin (least recently served first), FIFO within one
  local members
  if only then
    members = {}
    if redis.call("ZSCORE", key("rr"), only) then members[1] = only end
  elseif queues ~= nil and next(queues) == nil then
    members = {}  -- no queue changed: only resumed runs and lenders may move
  else
    members = redis.call("ZRANGE", key("rr"), 0, -1)
  end
  local candidates = {}
  local contended = capped
  for _, member in ipairs(members) do
    local pair = cjson.decode(member)
    local queue, ckey = pair[1], pair[2]
    if only or queues == nil or queues[queue] then
      local queue_key = key("queue:" .. enc(queue))
      local sub_key = key("sq:" .. enc(queue) .. ":" .. enc(ckey))
      local queue_state = redis.call("HMGET", queue_key, "limit", "total", "paused", "until")
      local sub_state = redis.call("HMGET", sub_key, "running", "paused", "until")
      if not paused(queue_state[3], queue_state[4], at)
          and not paused(sub_state[2], sub_state[3], at) then
        local candidate = {member = member, queue_key = queue_key, sub_key = sub_key,
                           waiting_key = key("sqw:" .. enc(queue) .. ":" .. enc(ckey)),
                           limit = tonumber(queue_state[1]), total = tonumber(queue_state[2]),
                           running = tonumber(sub_state[1] or "0")}
        if candidate.total ~= nil then contended = true end
        candidates[#candidates + 1] = candidate
      end
    end
  end
  local progress = true
  while progress and #candidates > 0 and admitted < 10000 do
    progress = false
    local keep = {}
    for _, candidate in ipairs(candidates) do
      local env = env_free()
      if env == 0 then return admitted end
      local waiting = redis.call("ZCARD", candidate.waiting_key)
      local room = waiting
      if candidate.limit ~= nil then
        room = math.min(room, candidate.limit - candidate.running)
      end
      if candidate.total ~= nil then
        local queue_running = tonumber(redis.call("HGET", candidate.queue_key, "running") or "0")
        room = math.min(room, candidate.total - queue_running)
      end
      if env ~= nil then room = math.min(room, env) end
      if room > 0 then
        local take = room
        if contended then take = 1 end
        local ids = redis.call("ZRANGE", candidate.waiting_key, 0, take - 1)
        for _, id in ipairs(ids) do redis.call("ZREM", candidate.waiting_key, id) end
        running = grant(ids, candidate.queue_key, candidate.sub_key)
        local served = counter("n:served", 1)
        redis.call("HSET", candidate.sub_key, "served", served)
        candidate.running = candidate.running + #ids
        admitted = admitted + #ids
        progress = true
        if redis.call("ZCARD", candidate.waiting_key) == 0 then
          redis.call("ZREM", key("rr"), candidate.member)
        else
          redis.call("ZADD", key("rr"), served, candidate.member)
          keep[#keep + 1] = candidate
        end
      elseif waiting == 0 then
        redis.call("ZREM", key("rr"), candidate.member)
      end
    end
    candidates = keep
  end
  -- 3. FROZEN runs lend their idle queue slot to a child they wait on
  for _, lender in ipairs(redis.call("SMEMBERS", key("lenders"))) do
    if env_free() == 0 then break end
    local queue = redis.call("HGET", run_key(lender), "queue")
    local wanted = queues == nil or queues[queue]
    if only then wanted = cjson.decode(only)[1] == queue end
    if queue and wanted and lend(lender) then
      running = running + 1
      admitted = admitted + 1
    end
  end
  return admitted
end
