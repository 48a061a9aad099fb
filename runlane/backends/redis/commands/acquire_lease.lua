-- acquire_lease: the leader lease args.name is args.owner's for args.ttl_ms, if free or
-- already its own. Reply: "1" when it holds the lease, else "0".

local function acquire_lease()
  local lease_key = key("lease:" .. args.name)
  local owner = redis.call("GET", lease_key)
  if owner == false or owner == args.owner then
    redis.call("SET", lease_key, args.owner, "PX", args.ttl_ms)
    return "1"
  end
  return "0"
end

return acquire_lease
