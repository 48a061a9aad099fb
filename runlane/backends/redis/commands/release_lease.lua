-- release_lease: give the leader lease args.name up, if args.owner holds it. Reply: "1".

local function release_lease()
  local lease_key = key("lease:" .. args.name)
  if redis.call("GET", lease_key) == args.owner then redis.call("DEL", lease_key) end
  return "1"
end

return release_lease
