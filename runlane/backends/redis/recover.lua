-- runlane native Redis broker: give back the in-flight deliveries of workers whose heartbeat
-- expired (they died or hung). KEYS[1] = prefix. Returns how many deliveries were requeued.
local P = KEYS[1]
local n = 0
for _, worker in ipairs(redis.call("SMEMBERS", P .. "workers")) do
  if redis.call("EXISTS", P .. "wk:" .. worker) == 0 then
    local inflight = P .. "inflight:" .. worker
    local items = redis.call("HGETALL", inflight)
    for i = 2, #items, 2 do
      local d = cjson.decode(items[i])
      local tk = #d[2] .. ":" .. d[2]
      redis.call("LPUSH", P .. "bq:" .. tk, items[i])
      redis.call("RPUSH", P .. "sig:" .. tk, 1)
      redis.call("LTRIM", P .. "sig:" .. tk, 0, 31)
      n = n + 1
    end
    redis.call("DEL", inflight)
    redis.call("SREM", P .. "workers", worker)
  end
end
return n
