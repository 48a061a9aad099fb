-- purge: finished runs past their retention (at most args.limit): the run and everything
-- about it, index entries too. Reply: how many it looked at.

local function purge_run(id, run)
  redis.call("ZREM", key("ix:all"), id)
  redis.call("ZREM", key("ix:st:" .. run.status), id)
  redis.call("ZREM", key("ix:task:" .. enc(run.task)), id)
  redis.call("ZREM", key("ix:q:" .. enc(run.queue)), id)
  for _, tag in ipairs(cjson.decode(run.tags or "[]")) do
    redis.call("ZREM", key("ix:tag:" .. enc(tag)), id)
  end
  if run.batch_id then redis.call("ZREM", key("ix:batch:" .. run.batch_id), id) end
  if run.schedule_id then redis.call("ZREM", key("ix:sched:" .. run.schedule_id), id) end
  if run.version then redis.call("ZREM", key("ix:ver:" .. enc(run.version)), id) end
  if run.parent_id then
    redis.call("ZREM", key("ix:parent:" .. run.parent_id), id)
    redis.call("SREM", key("children:" .. run.parent_id), id)
  end
  if run.idempotency_key then
    local idem_key = key("idem:" .. enc(run.task) .. ":" .. enc(run.idempotency_key))
    local owner = redis.call("GET", idem_key)
    if owner and string.sub(owner, 1, #id + 1) == id .. "|" then redis.call("DEL", idem_key) end
  end
  for number = 1, tonumber(run.attempt_count or "0") do
    redis.call("DEL", key("wp:" .. id .. ":" .. number), key("wpn:" .. id .. ":" .. number),
               key("wpr:" .. id .. ":" .. number))
  end
  redis.call("DEL", run_key(id), key("att:" .. id), key("md:" .. id), key("logs:" .. id),
             key("children:" .. id), key("ix:parent:" .. id), key("st:" .. id),
             key("blob:" .. id .. ":payload"), key("blob:" .. id .. ":output"))
end

local function purge()
  local ids = redis.call("ZRANGEBYSCORE", key("gc"), "-inf", now, "LIMIT", 0, args.limit)
  for _, id in ipairs(ids) do
    redis.call("ZREM", key("gc"), id)
    local flat = redis.call("HGETALL", run_key(id))
    local run = {}
    for i = 1, #flat, 2 do run[flat[i]] = flat[i + 1] end
    if run.status and FINAL[run.status] then purge_run(id, run) end
  end
  return tostring(#ids)
end

return purge
