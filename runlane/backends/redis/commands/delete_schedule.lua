-- delete_schedule: delete schedule args.id and its index entries; with args.generation,
-- only one that no later generation wrote. Reply: "1" when deleted, else "0".

local function delete_schedule()
  local schedule_key = key("sch:" .. args.id)
  local stored = redis.call("HMGET", schedule_key, "task", "deduplication_key", "generation")
  if not stored[1] then return "0" end
  if given(args.generation) and stored[3] and stored[3] > args.generation then return "0" end
  redis.call("DEL", schedule_key)
  if stored[2] then redis.call("DEL", key("schdd:" .. enc(stored[2]))) end
  redis.call("ZREM", key("schix"), args.id)
  redis.call("ZREM", key("schix:" .. enc(stored[1])), args.id)
  redis.call("ZREM", key("schdue"), args.id)
  return "1"
end

return delete_schedule
