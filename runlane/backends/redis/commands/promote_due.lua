-- promote_due: what is due by now: DELAYED runs are queued (or wait for their task's
-- deploy), REATTEMPTING runs queued again, time waitpoints resolved, and pauses that have
-- ended lifted (at most args.limit of each kind). Reply: how many runs moved (queued,
-- waiting for a deploy, or resumed from a wait), as the SQLite store counts them.

local function queue_or_wait(id, at)
  -- DELAYED → QUEUED (task known) or WAITING_FOR_DEPLOY; the TTL starts now. Returns the
  -- queue when the run was queued
  local task = get(id, "task")
  local ttl = num(id, "ttl")
  redis.call("HSET", run_key(id), "queued_at", at)
  if ttl then redis.call("ZADD", key("ttl"), at + ttl, id) end  -- when it expires unstarted
  if redis.call("HEXISTS", key("tasks"), task) == 1 then
    set_status(id, "QUEUED", at)
    enqueue(id, at)
    return get(id, "queue")
  end
  set_status(id, "WAITING_FOR_DEPLOY", at)
  redis.call("SADD", key("wfd:" .. enc(task)), id)
  return nil
end

local function due(name)
  return redis.call("ZRANGEBYSCORE", key(name), "-inf", now, "LIMIT", 0, args.limit)
end

local function promote_due()
  local moved = 0
  local queues = {}
  for _, id in ipairs(due("delayed")) do
    redis.call("ZREM", key("delayed"), id)
    if get(id, "status") == "DELAYED" then
      local queue = queue_or_wait(id, now)
      if queue then queues[#queues + 1] = queue end
      moved = moved + 1
    end
  end
  for _, id in ipairs(due("retry")) do
    redis.call("ZREM", key("retry"), id)
    if get(id, "status") == "REATTEMPTING" then
      set_status(id, "QUEUED", now)
      redis.call("HDEL", run_key(id), "retry_at")
      enqueue(id, now)
      queues[#queues + 1] = get(id, "queue")
      moved = moved + 1
    end
  end
  for _, ref in ipairs(due("twaits")) do
    redis.call("ZREM", key("twaits"), ref)
    local run_id, attempt, index = string.match(ref, "^(.-)|(%d+)|(%d+)$")
    moved = moved + resolve(run_id, tonumber(attempt), tonumber(index), now)
  end
  -- pauses that have ended
  for _, queue in ipairs(redis.call("SMEMBERS", key("queues"))) do
    local queue_key = key("queue:" .. enc(queue))
    local pause = redis.call("HMGET", queue_key, "paused", "until")
    if pause[1] == "1" and pause[2] and tonumber(pause[2]) <= now then
      redis.call("HSET", queue_key, "paused", 0)
      redis.call("HDEL", queue_key, "until")
      queues[#queues + 1] = queue
    end
  end
  for _, member in ipairs(redis.call("SMEMBERS", key("pausedkeys"))) do
    local pair = cjson.decode(member)
    local sub_key = key("sq:" .. enc(pair[1]) .. ":" .. enc(pair[2]))
    local pause = redis.call("HMGET", sub_key, "paused", "until")
    if pause[1] ~= "1" then
      redis.call("SREM", key("pausedkeys"), member)
    elseif pause[2] and tonumber(pause[2]) <= now then
      redis.call("HSET", sub_key, "paused", 0)
      redis.call("HDEL", sub_key, "until")
      redis.call("SREM", key("pausedkeys"), member)
      queues[#queues + 1] = pair[1]
    end
  end
  admit_after(now, env_limit, queues)
  return tostring(moved)
end

return promote_due
