-- runlane Redis store: waitpoints. A suspended attempt waits on one (wp:<id>:<attempt>, by
-- wait index): on runs (pending in wpn: until each is final), a batch, or a time. Its
-- description (JSON in wp:) never changes after it is written; its pending count and its
-- resolution live apart (wpn:, wpr:), so a child finishing costs O(1) however many children
-- the waitpoint lists. A resolved waitpoint resumes its run if the run is FROZEN on it.

local function resume_if_frozen_on(id, attempt, index, at)
  if get(id, "status") ~= "FROZEN" or get(id, "attempt_count") ~= tostring(attempt)
      or get(id, "wait_index") ~= tostring(index) then
    return 0
  end
  set_status(id, "QUEUED", at)
  redis.call("HSET", run_key(id), "resume", 1, "admitted", 0)
  redis.call("HDEL", run_key(id), "wait_index")
  redis.call("SREM", key("lenders"), id)
  redis.call("ZADD", key("resumeq"), num(id, "queue_ts") or at, id)
  RESUMED = true
  return 1
end

local function resolve(run_id, attempt, index, at)
  local resolved_key = key("wpr:" .. run_id .. ":" .. attempt)
  if redis.call("HSETNX", resolved_key, tostring(index), at) == 0 then return end
  resume_if_frozen_on(run_id, attempt, index, at)
end

local function finalized(ids, at)
  -- runs became final: count them off the waitpoints that wait on them
  for _, child in ipairs(ids) do
    local waiters_key = key("waiters:" .. child)
    local refs = redis.call("SMEMBERS", waiters_key)
    if #refs > 0 then redis.call("DEL", waiters_key) end
    for _, ref in ipairs(refs) do
      local run_id, attempt, index = string.match(ref, "^(.-)|(%d+)|(%d+)$")
      local left = redis.call("HINCRBY", key("wpn:" .. run_id .. ":" .. attempt), index, -1)
      if left <= 0 then resolve(run_id, tonumber(attempt), tonumber(index), at) end
    end
  end
end

local function create_waitpoint(wait, run_ids, at)
  local wait_key = key("wp:" .. wait.run_id .. ":" .. wait.attempt)
  if redis.call("HEXISTS", wait_key, tostring(wait.index)) == 1 then return end
  local pending = 0
  local seen = {}
  local ref = wait.run_id .. "|" .. wait.attempt .. "|" .. wait.index
  local awaited = wait.kind == "run" or wait.kind == "batch"  -- triggers are only recorded
  for _, child in ipairs(run_ids) do
    if awaited and not seen[child] then
      seen[child] = true
      local status = get(child, "status")
      if status and not FINAL[status] then
        pending = pending + 1
        redis.call("SADD", key("waiters:" .. child), ref)
      end
    end
  end
  local description = {kind = wait.kind, fingerprint = wait.fingerprint, run_ids = run_ids,
                       batch_id = wait.batch_id or NULL, resume_at = wait.resume_at or NULL}
  if #run_ids == 0 then description.run_ids = "[]" end
  local text = cjson.encode(description)
  if #run_ids == 0 then text = string.gsub(text, '"run_ids":"%[%]"', '"run_ids":[]') end
  redis.call("HSET", wait_key, tostring(wait.index), text)
  redis.call("HSET", key("wpn:" .. wait.run_id .. ":" .. wait.attempt), tostring(wait.index),
             pending)
  if pending == 0 and wait.kind ~= "time" then
    redis.call("HSET", key("wpr:" .. wait.run_id .. ":" .. wait.attempt), tostring(wait.index),
               at)
  end
  if wait.kind == "time" then redis.call("ZADD", key("twaits"), wait.resume_at, ref) end
end

local function is_resolved(run_id, attempt, index, at)
  if redis.call("HEXISTS", key("wpr:" .. run_id .. ":" .. attempt), tostring(index)) == 1 then
    return true
  end
  local raw = redis.call("HGET", key("wp:" .. run_id .. ":" .. attempt), tostring(index))
  if not raw then return false end
  local wait = cjson.decode(raw)
  return wait.kind == "time" and wait.resume_at ~= NULL and wait.resume_at <= at
end
