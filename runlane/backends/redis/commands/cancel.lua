-- cancel: the run and its descendants that are not final become CANCELED (args.error). An
-- executing attempt keeps its slots (and lease) until it has stopped (release_canceled, or
-- the reaper). Reply: "1", or null for an unknown run.

local function remove_from_time_index_keep_lease(id)
  redis.call("ZREM", key("delayed"), id)
  redis.call("ZREM", key("retry"), id)
  redis.call("ZREM", key("ttl"), id)
  redis.call("SREM", key("wfd:" .. enc(get(id, "task"))), id)
end

local function cancel_attempt(id)
  -- the run's last attempt, if executing or suspended, is canceled with it
  local number = tonumber(get(id, "attempt_count") or "0")
  if number == 0 then return end
  local attempts_key = key("att:" .. id)
  local raw = redis.call("HGET", attempts_key, tostring(number))
  if not raw then return end
  local record = cjson.decode(raw)
  if record.status == "EXECUTING" or record.status == "SUSPENDED" then
    record.status = "CANCELED"
    record.finished_at = now
    record.error = cjson.decode(args.error)
    redis.call("HSET", attempts_key, tostring(number), cjson.encode(record))
  end
end

local function cancel()
  local root = args.run_id
  local status = get(root, "status")
  if not status then return "null" end
  if FINAL[status] then return "1" end
  local todo, canceled, queues = {root}, {}, {}
  while #todo > 0 do
    local id = table.remove(todo)
    local current = get(id, "status")
    if current and not FINAL[current] then
      if current ~= "EXECUTING" then
        local queue = leave(id)
        if queue then queues[#queues + 1] = queue end
        redis.call("HDEL", run_key(id), "lease_until")
        redis.call("ZREM", key("leases"), id)
      else
        redis.call("SADD", key("draining"), id)
      end
      hset(id, {error = args.error, finished_at = now, resume = 0, wait_index = false,
                admitted = 0})
      set_status(id, "CANCELED", now)
      remove_from_time_index_keep_lease(id)
      retain(id, now)
      cancel_attempt(id)
      canceled[#canceled + 1] = id
      for _, child in ipairs(redis.call("SMEMBERS", key("children:" .. id))) do
        todo[#todo + 1] = child
      end
    end
  end
  finalized(canceled, now)
  admit_after(now, env_limit, queues)
  return "1"
end

return cancel
