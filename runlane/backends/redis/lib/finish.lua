-- runlane Redis store: what ends an attempt or a run: the time it executed, the slots an
-- attempt canceled while it ran kept until it stopped, the time indexes a final run leaves,
-- and how long a finished run is kept.

local function remove_from_time_index(id)
  redis.call("ZREM", key("delayed"), id)
  redis.call("ZREM", key("retry"), id)
  redis.call("ZREM", key("ttl"), id)
  redis.call("ZREM", key("leases"), id)
end

local function segment_ms(id, at)
  -- how long the run has executed since its attempt last started or resumed
  local start = num(id, "segment_started_at")
  if not start then return 0 end
  return math.max(0, math.floor((at - start) * 1000))
end

local function retain(id, at)
  -- a finished run is kept until at + args.retention, or args.purge_at: that sum for at =
  -- now as the caller made it (finish_attempt: no number to format)
  if args.purge_at then
    redis.call("ZADD", key("gc"), args.purge_at, id)
  elseif args.retention and args.retention ~= NULL then
    redis.call("ZADD", key("gc"), as_text(at + args.retention), id)
  end
end

local function finish_final(id, at)
  remove_from_time_index(id)
  redis.call("SREM", key("wfd:" .. enc(get(id, "task"))), id)
  retain(id, at)
end

local function release_stopped(id, status, count, attempt)
  -- attempt `attempt` has stopped; if its run was canceled while it ran (status and attempt
  -- count as read by the caller), the slots it kept while stopping are free now
  if status ~= "CANCELED" or count ~= as_text(attempt) then return end
  local queue = release(id, false)
  redis.call("HDEL", run_key(id), "lease_until")
  redis.call("ZREM", key("leases"), id)
  redis.call("SREM", key("draining"), id)
  local queues = {}
  if queue then queues[1] = queue end
  admit_after(now, env_limit, queues)
end

local function settle(id)
  -- the delivery that carried this run is done: its result is being recorded right here
  if given(args.ack) then redis.call("HDEL", key("inflight:" .. args.ack), id) end
end
