-- runlane Redis store: queueing a run: its queue is known (queues, queue:<q>) and the run
-- waits in its sub-queue (sqw:<q>:<k>, and rr while any run waits there) for admission.

local function upsert_queue(queue, limit, total, update)
  local queue_key = key("queue:" .. enc(queue))
  redis.call("SADD", key("queues"), queue)
  if update then  -- a definition that names the queue without a limit keeps its limits
    if limit ~= NULL and limit ~= nil then redis.call("HSET", queue_key, "limit", limit) end
    if total ~= NULL and total ~= nil then redis.call("HSET", queue_key, "total", total) end
  end
  redis.call("HSETNX", queue_key, "running", 0)
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
