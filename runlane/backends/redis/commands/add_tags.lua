-- add_tags: add args.tags to the run's tags (none when that would pass args.max). Reply: the
-- run's tags, or null for an unknown run.

local function add_tags()
  local id = args.run_id
  local raw = get(id, "tags")
  if not raw then return "null" end
  local current = cjson.decode(raw)
  local have = {}
  for _, tag in ipairs(current) do have[tag] = true end
  local fresh = {}
  for _, tag in ipairs(args.tags) do
    if not have[tag] then have[tag] = true fresh[#fresh + 1] = tag end
  end
  if #fresh > 0 and #current + #fresh <= args.max then
    for _, tag in ipairs(fresh) do
      current[#current + 1] = tag
      redis.call("ZADD", key("ix:tag:" .. enc(tag)), 0, id)
    end
    redis.call("HSET", run_key(id), "tags", cjson.encode(current), "updated_at", now)
    publish(id)
  end
  return json_list(current)
end

return add_tags
