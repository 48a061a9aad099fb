-- take_ready: take up to args.limit admitted runs from the "ready" outbox, for the engine to
-- send to its broker. Reply: their dispatches [id, task, queue, machine] (runs no longer
-- QUEUED left out).

local function take_ready()
  local ids = redis.call("LRANGE", key("ready"), 0, args.limit - 1)
  if #ids > 0 then redis.call("LTRIM", key("ready"), #ids, -1) end
  return json_list(dispatches(ids))
end

return take_ready
