-- runlane Redis store: writing a waitpoint (see waits.lua): its description, how many of the
-- runs it waits on are not final yet (each of those lists it in waiters:<run>), and, when none
-- is, its resolution.

local function create_waitpoint(wait, run_ids, at)
  local wait_key = key("wp:" .. wait.run_id .. ":" .. wait.attempt)
  if redis.call("HEXISTS", wait_key, tostring(wait.index)) == 1 then return end
  local pending = 0
  local seen = {}
  local ref = wait.run_id .. "|" .. wait.attempt .. "|" .. wait.index
  local awaited = wait.kind == "run" or wait.kind == "batch"  -- triggers are only recorded
  for _, child in ipairs(run_ids) do
    if awaited and not seen[child] then
      seen[child] = true
      local status = get(child, "status")
      if status and not FINAL[status] then
        pending = pending + 1
        redis.call("SADD", key("waiters:" .. child), ref)
      end
    end
  end
  local description = {kind = wait.kind, fingerprint = wait.fingerprint, run_ids = run_ids,
                       batch_id = wait.batch_id or NULL, resume_at = wait.resume_at or NULL}
  if #run_ids == 0 then description.run_ids = "[]" end
  local text = cjson.encode(description)
  if #run_ids == 0 then text = string.gsub(text, '"run_ids":"%[%]"', '"run_ids":[]') end
  redis.call("HSET", wait_key, tostring(wait.index), text)
  redis.call("HSET", key("wpn:" .. wait.run_id .. ":" .. wait.attempt), tostring(wait.index),
             pending)
  if pending == 0 and wait.kind ~= "time" then
    redis.call("HSET", key("wpr:" .. wait.run_id .. ":" .. wait.attempt), tostring(wait.index),
               at)
  end
  if wait.kind == "time" then redis.call("ZADD", key("twaits"), wait.resume_at, ref) end
end
