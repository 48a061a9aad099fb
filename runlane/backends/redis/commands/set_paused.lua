-- set_paused: pause (until args["until"], or until resumed) or resume queue args.queue, or
-- only its concurrency key args.key. Reply: "1", or "0" for an unknown queue.

local function set_pause(hash_key)
  if args.paused then
    redis.call("HSET", hash_key, "paused", 1)
    if given(args["until"]) then redis.call("HSET", hash_key, "until", args["until"])
    else redis.call("HDEL", hash_key, "until") end
  else
    redis.call("HSET", hash_key, "paused", 0)
    redis.call("HDEL", hash_key, "until")
  end
end

local function set_paused()
  if redis.call("SISMEMBER", key("queues"), args.queue) == 0 then return "0" end
  if given(args.key) then
    set_pause(key("sq:" .. enc(args.queue) .. ":" .. enc(args.key)))
    local member = sq_member(args.queue, args.key)
    if args.paused then
      redis.call("SADD", key("pausedkeys"), member)
    else
      redis.call("SREM", key("pausedkeys"), member)
    end
  else
    set_pause(key("queue:" .. enc(args.queue)))
  end
  if not args.paused then admit_after(now, env_limit, {args.queue}) end
  return "1"
end

return set_paused
