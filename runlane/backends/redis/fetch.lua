-- runlane native Redis broker: reliable fetch.
-- KEYS[1] = prefix "<prefix>:{<env>}:"; ARGV = worker id, max count, heartbeat ms, queue lists...
-- Moves up to ARGV[2] deliveries from the task lists (P.."bq:"..) into the worker's in-flight
-- hash (P.."inflight:"..worker) and returns them; refreshes the worker's heartbeat key.
local P = KEYS[1]
local worker = ARGV[1]
local max = tonumber(ARGV[2])
redis.call("SET", P .. "wk:" .. worker, "1", "PX", tonumber(ARGV[3]))
redis.call("SADD", P .. "workers", worker)
local out = {}
local inflight = P .. "inflight:" .. worker
for i = 4, #ARGV do
  while #out < max do
    local msg = redis.call("LPOP", P .. "bq:" .. ARGV[i])
    if not msg then break end
    local d = cjson.decode(msg)
    redis.call("HSET", inflight, d[1], msg)
    out[#out + 1] = msg
  end
  if #out >= max then break end
end
return out
