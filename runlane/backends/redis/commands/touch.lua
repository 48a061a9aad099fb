-- touch: the run's metadata changed (written by the caller, md:<id>): its updated_at and an
-- entry of the change feed. Reply: "1", or "0" for an unknown run.

local function touch()
  local id = args.run_id
  if redis.call("EXISTS", run_key(id)) == 0 then return "0" end
  redis.call("HSET", run_key(id), "updated_at", as_text(now))
  publish(id)
  return "1"
end

return touch
