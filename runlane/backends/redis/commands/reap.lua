-- reap: attempts whose lease expired (at most args.limit) crashed: the run is retried or
-- becomes CRASHED; a run canceled while executing whose worker never reported back gives its
-- slots back. args.handed_back_by: a worker that handed its attempts back on shutdown (said
-- in their error). Reply: the ids of the runs whose attempt crashed.

local function attempt_update(id, number, fields)
  local attempts_key = key("att:" .. id)
  local raw = redis.call("HGET", attempts_key, tostring(number))
  if not raw then return end
  local record = cjson.decode(raw)
  for field, v in pairs(fields) do record[field] = v end
  redis.call("HSET", attempts_key, tostring(number), cjson.encode(record))
end

local function crash(id, queues, finals)
  local number = tonumber(get(id, "attempt_count"))
  local worker = get(id, "worker_id")
  local why = "stopped renewing its lease"
  if args.handed_back_by and worker == args.handed_back_by then
    why = "handed it back on shutdown"
  end
  local crash_error = cjson.encode({name = "WorkerCrashedError", code = "TASK_RUN_CRASHED",
    message = "the worker executing attempt " .. number .. " (" .. (worker or "?") .. ") "
              .. why})
  local retry = number < tonumber(get(id, "attempts_allowed") or "1")
  local queue = release(id, false)
  if queue then queues[#queues + 1] = queue end
  hset(id, {error = crash_error, duration_ms = tonumber(get(id, "duration_ms") or "0")
              + segment_ms(id, now), segment_started_at = false, lease_until = false,
            admitted = 0, retry_at = retry and now or false,
            finished_at = (not retry) and now or false})
  attempt_update(id, number, {status = "CRASHED", finished_at = now,
                              error = cjson.decode(crash_error)})
  if retry then
    set_status(id, "REATTEMPTING", now)
    redis.call("ZADD", key("retry"), now, id)
  else
    set_status(id, "CRASHED", now)
    finish_final(id, now)
    finals[#finals + 1] = id
  end
end

local function reap()
  local ids = redis.call("ZRANGEBYSCORE", key("leases"), "-inf", "(" .. now,
                         "LIMIT", 0, args.limit)
  local reaped, finals, queues = {}, {}, {}
  for _, id in ipairs(ids) do
    redis.call("ZREM", key("leases"), id)
    if get(id, "status") == "CANCELED" and redis.call("SREM", key("draining"), id) == 1 then
      -- canceled while executing, and its worker never reported back: free the slots
      local queue = release(id, false)
      if queue then queues[#queues + 1] = queue end
      redis.call("HDEL", run_key(id), "lease_until")
    elseif get(id, "status") == "EXECUTING" and (num(id, "lease_until") or 0) < now then
      crash(id, queues, finals)
      reaped[#reaped + 1] = id
    end
  end
  finalized(finals, now)
  admit_after(now, env_limit, queues)
  return json_list(reaped)
end

return reap
