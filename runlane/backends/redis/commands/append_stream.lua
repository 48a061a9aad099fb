-- append_stream: append args.chunks (JSON texts) to the run's stream args.key, each a feed
-- entry, unless the run's streams would then pass args.max chunks. Reply: the last chunk's
-- position, null for an unknown run, {"limit": count} when refused (nothing written).

local function append_stream()
  local id = args.run_id
  if redis.call("EXISTS", run_key(id)) == 0 then return "null" end
  local stream = key("st:" .. id)
  local have = redis.call("XLEN", stream)
  if have + #args.chunks > args.max then
    return '{"limit":' .. (have + #args.chunks) .. '}'
  end
  local n
  for _, data in ipairs(args.chunks) do
    n = note(id, "s")
    redis.call("XADD", stream, string.format("%d-0", n), "k", args.key, "d", data)
  end
  return string.format("%d", n)
end

return append_stream
