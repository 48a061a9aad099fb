-- heartbeat: a worker's executing attempts (args.attempts: run id -> attempt number) keep
-- their leases, now until args.lease_until. Reply: the runs whose attempt it no longer holds.

local function heartbeat()
  local lost = {}
  for id, number in pairs(args.attempts) do
    if get(id, "status") == "EXECUTING" and get(id, "attempt_count") == tostring(number)
        and (num(id, "lease_until") or 0) >= now then
      redis.call("HSET", run_key(id), "lease_until", args.lease_until)
      redis.call("ZADD", key("leases"), args.lease_until, id)
    else
      lost[#lost + 1] = id
    end
  end
  return json_list(lost)
end

return heartbeat
