-- expire_runs: runs whose TTL passed before they started become EXPIRED (at most
-- args.limit). Reply: their ids.

local function format_duration(seconds)
  local total = math.floor(seconds + 0.5)
  if total <= 0 then return "0s" end
  local out = ""
  for _, unit in ipairs({{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}}) do
    local count = math.floor(total / unit[2])
    total = total - count * unit[2]
    if count > 0 then out = out .. count .. unit[1] end
  end
  return out
end

local function expire_runs()
  local ids = redis.call("ZRANGEBYSCORE", key("ttl"), "-inf", now, "LIMIT", 0, args.limit)
  local expired, queues = {}, {}
  for _, id in ipairs(ids) do
    redis.call("ZREM", key("ttl"), id)
    local status = get(id, "status")
    if (status == "QUEUED" or status == "WAITING_FOR_DEPLOY") and not get(id, "started_at") then
      local queue = leave(id)
      if queue then queues[#queues + 1] = queue end
      local ttl = num(id, "ttl") or 0
      set_status(id, "EXPIRED", now)
      local message = "Run expired because the TTL (" .. format_duration(ttl)
                      .. ") was reached"
      hset(id, {expired_at = now, finished_at = now, admitted = 0,
                error = cjson.encode({name = "Error", code = "TTL_EXPIRED", message = message})})
      finish_final(id, now)
      expired[#expired + 1] = id
    end
  end
  finalized(expired, now)
  admit_after(now, env_limit, queues)
  return json_list(expired)
end

return expire_runs
