-- suspend: the executing attempt args.attempt waits on its waitpoint args.index: the run is
-- FROZEN (keeping its queue slot, which it may lend) or, when the waitpoint has resolved
-- already, QUEUED to resume. Reply: the new status, or null when the attempt was no longer
-- the run's executing one.

local function executed_ms(id, attempt, at, attempt_ms)
  -- execution time of this stretch: the attempt's own measure (waits excluded) when given
  if attempt_ms == nil or attempt_ms == NULL then return segment_ms(id, at) end
  local raw = redis.call("HGET", key("att:" .. id), tostring(attempt))
  local used = 0
  if raw then used = cjson.decode(raw).duration_ms or 0 end
  return math.max(0, attempt_ms - used)
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

local function suspend()
  local id = args.run_id
  settle(id)
  local current = redis.call("HMGET", run_key(id), "status", "attempt_count")
  if current[1] ~= "EXECUTING" or current[2] ~= as_text(args.attempt) then
    -- canceled before the worker stopped it
    release_stopped(id, current[1], current[2], args.attempt)
    return reply("null")
  end
  local elapsed = executed_ms(id, args.attempt, now, args.attempt_ms)
  local queue = release(id, true)
  local resolved = is_resolved(id, args.attempt, args.index, now)
  local status = "FROZEN"
  if resolved then status = "QUEUED" end
  hset(id, {duration_ms = tonumber(get(id, "duration_ms") or "0") + elapsed,
            segment_started_at = false, lease_until = false, admitted = 0,
            resume = resolved and 1 or 0, wait_index = (not resolved) and args.index or false})
  redis.call("ZREM", key("leases"), id)
  local attempts_key = key("att:" .. id)
  local record = cjson.decode(redis.call("HGET", attempts_key, tostring(args.attempt)))
  record.status = "SUSPENDED"
  record.duration_ms = (record.duration_ms or 0) + elapsed
  redis.call("HSET", attempts_key, tostring(args.attempt), cjson.encode(record))
  set_status(id, status, now)
  if resolved then
    redis.call("SREM", key("lenders"), id)
    redis.call("ZADD", key("resumeq"), num(id, "queue_ts") or now, id)
    RESUMED = true
  end
  local queues = {}
  if queue then queues[1] = queue end
  admit_after(now, env_limit, queues)
  return reply(cjson.encode(status))
end

return suspend
