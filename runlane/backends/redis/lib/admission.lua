-- runlane Redis store: admission. A QUEUED run waits in its sub-queue (its queue and
-- concurrency key) until it is admitted: it then holds a slot of the sub-queue, of its queue
-- (when the queue has a total limit) and of the environment, recorded in its hash
-- (holds_queue, holds_env), and goes to the broker. Sub-queues are served round robin (least
-- recently served first), FIFO within one; a FROZEN run keeps its queue slot and may lend it
-- to a child it waits on.

local function paused(flag, until_at, at)
  return flag == "1" and (until_at == false or until_at == nil or tonumber(until_at) > at)
end

local function upsert_queue(queue, limit, total, update)
  local queue_key = key("queue:" .. enc(queue))
  redis.call("SADD", key("queues"), queue)
  if update then  -- a definition that names the queue without a limit keeps its limits
    if limit ~= NULL and limit ~= nil then redis.call("HSET", queue_key, "limit", limit) end
    if total ~= NULL and total ~= nil then redis.call("HSET", queue_key, "total", total) end
  end
  redis.call("HSETNX", queue_key, "running", 0)
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

local function enqueue(id, at, new_queue, new_ckey)
  -- the run is QUEUED; it waits in its sub-queue for admission (keeping its place if it had
  -- one). new_queue, new_ckey: a run just created there (its hash already says admitted 0
  -- and queue_ts at)
  local queue, ckey, ts = new_queue, new_ckey, at
  if not new_queue then
    local fields = redis.call("HMGET", run_key(id), "queue", "ckey", "queue_ts")
    queue, ckey, ts = fields[1], fields[2] or "", tonumber(fields[3]) or at
    redis.call("HSET", run_key(id), "admitted", "0", "queue_ts", as_text(ts))
  end
  upsert_queue(queue, nil, nil, false)
  redis.call("ZADD", key("sqw:" .. enc(queue) .. ":" .. enc(ckey)), as_text(ts), id)
  local member = sq_member(queue, ckey)
  if not redis.call("ZSCORE", key("rr"), member) then
    local served = redis.call("HGET", key("sq:" .. enc(queue) .. ":" .. enc(ckey)), "served")
    redis.call("ZADD", key("rr"), tonumber(served or "0"), member)
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

-- a run's slot: fields of its hash, read with the run's queue and key
local SLOT = {"holds_queue", "holds_env", "borrowed_from", "lent_to", "queue", "ckey"}

local function slot_of(fields, i)
  -- the slot in an HMGET reply whose fields i .. i+5 are SLOT's (nil: the run holds none)
  if not fields[i] then return nil end
  return {holds_queue = fields[i], holds_env = fields[i + 1],
          borrowed_from = fields[i + 2] or nil, lent_to = fields[i + 3] or nil,
          queue = fields[i + 4], ckey = fields[i + 5] or ""}
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

local function release(id, keep_queue_slot, slot, dels)
  -- give back the run's slots; returns the queue whose capacity changed (or nil) and the
  -- slot's concurrency key. slot: as the caller read it (slot_of; nil: read here). dels:
  -- the caller deletes the run's fields in an HDEL of its own, the slot's among them
  -- (appended to dels); else they are deleted here
  if dels == nil then slot = slot_of(redis.call("HMGET", run_key(id), unpack(SLOT)), 1) end
  if not slot then return nil end
  if slot.holds_env == "1" then counter("running", -1) end
  if keep_queue_slot then
    redis.call("HSET", run_key(id), "holds_env", "0")
    redis.call("SADD", key("lenders"), id)
    return slot.queue, slot.ckey
  end
  if dels then
    for i = 1, 4 do dels[#dels + 1] = SLOT[i] end
  else
    redis.call("HDEL", run_key(id), "holds_queue", "holds_env", "borrowed_from", "lent_to")
  end
  -- only a slot kept while its run was suspended (holds_env 0) put the run among lenders
  if slot.holds_env ~= "1" then redis.call("SREM", key("lenders"), id) end
  if slot.lent_to and (slot.holds_queue == "1" or slot.borrowed_from) then
    -- the borrower still runs in this slot: it keeps it, so the count stays exact
    local borrower_key = run_key(slot.lent_to)
    if slot.borrowed_from then
      redis.call("HSET", borrower_key, "holds_queue", slot.holds_queue,
                 "borrowed_from", slot.borrowed_from)
      redis.call("HSET", run_key(slot.borrowed_from), "lent_to", slot.lent_to)
    else
      redis.call("HSET", borrower_key, "holds_queue", slot.holds_queue)
      redis.call("HDEL", borrower_key, "borrowed_from")
    end
    return slot.queue, slot.ckey
  end
  if slot.borrowed_from then
    local lender_key = run_key(slot.borrowed_from)
    if redis.call("HGET", lender_key, "lent_to") == id then
      redis.call("HDEL", lender_key, "lent_to")
    end
  elseif slot.holds_queue == "1" then
    local sub_key = key("sq:" .. enc(slot.queue) .. ":" .. enc(slot.ckey or ""))
    if tonumber(redis.call("HINCRBY", sub_key, "running", "-1")) < 0 then
      redis.call("HSET", sub_key, "running", 0)
    end
    local queue_key = key("queue:" .. enc(slot.queue))
    if tonumber(redis.call("HINCRBY", queue_key, "running", "-1")) < 0 then
      redis.call("HSET", queue_key, "running", 0)
    end
  end
  return slot.queue, slot.ckey
end

local function leave(id)
  -- a run leaves admission entirely (final, retried, canceled, expired): slots or its place
  local status = get(id, "status")
  local queue = release(id, false)
  if queue == nil and status == "QUEUED" then leave_waiting(id) end
  redis.call("ZREM", key("resumeq"), id)
  return queue
end

local function admit_after(at, limit, changed, subqueue)
  -- admission after slots were freed or queues changed: with an environment cap every queue
  -- competes for a freed slot; otherwise only what changed: the queues listed (changed), and
  -- one freed sub-queue {queue, ckey} alone when its queue has no total limit (its keys are
  -- independent then: a release stays O(1) with many keys)
  if limit ~= nil and limit ~= NULL then return admit(at, limit, nil) end
  -- nothing waits in any sub-queue (rr), no resumed run waits (resumeq) and no run may lend
  -- its slot (lenders): nobody to admit, whatever changed
  if redis.call("EXISTS", key("rr"), key("resumeq"), key("lenders")) == 0 then return 0 end
  local set = {}
  for _, queue in ipairs(changed) do set[queue] = true end
  local admitted = 0
  if subqueue and not set[subqueue[1]] then
    if redis.call("HEXISTS", key("queue:" .. enc(subqueue[1])), "total") == 1 then
      set[subqueue[1]] = true
    else
      admitted = admit(at, limit, {}, sq_member(subqueue[1], subqueue[2]))
      if next(set) == nil then return admitted end  -- nothing else changed
    end
  end
  return admitted + admit(at, limit, set)
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
