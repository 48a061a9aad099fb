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
  -- the waitpoint resolves (once); returns 1 when its FROZEN run resumed, else 0
  local resolved_key = key("wpr:" .. run_id .. ":" .. attempt)
  if redis.call("HSETNX", resolved_key, tostring(index), at) == 0 then return 0 end
  return resume_if_frozen_on(run_id, attempt, index, at)
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
