-- transition: the run moves to status args.to from one of args.expect, with its fields
-- args.changes (a final status also gives its slots back). Reply: "1", or "0" when the run
-- was in none of those statuses.

local function transition()
  local id = args.run_id
  local status = get(id, "status")
  local expected = false
  for _, allowed in ipairs(args.expect) do if allowed == status then expected = true end end
  if not status or not expected then return "0" end
  local queues = {}
  if FINAL[args.to] then
    local queue = leave(id)
    if queue then queues[1] = queue end
    args.changes.admitted = 0
    args.changes.finished_at = args.changes.finished_at or now
  end
  hset(id, args.changes)
  if args.changes.delay_until and args.to == "DELAYED" then
    redis.call("ZADD", key("delayed"), args.changes.delay_until, id)
  end
  set_status(id, args.to, now)
  if FINAL[args.to] then
    finish_final(id, now)
    finalized({id}, now)
  end
  admit_after(now, env_limit, queues)
  return "1"
end

return transition
