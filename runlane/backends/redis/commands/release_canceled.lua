-- release_canceled: attempt args.attempt of a run canceled while it executed has stopped:
-- the slots it kept are given back. Reply: "1", or "0" when that is not the run's state.

local function release_canceled()
  local id = args.run_id
  local current = redis.call("HMGET", run_key(id), "status", "attempt_count")
  if current[1] ~= "CANCELED" or current[2] ~= tostring(args.attempt) then return "0" end
  release_stopped(id, current[1], current[2], args.attempt)
  return reply("1")
end

return release_canceled
