-- fetch_start: the native broker's reliable fetch and start_attempt in one call: pop
-- deliveries of the worker's tasks into its in-flight hash and start their attempts; runs
-- that cannot start (canceled, taken) are dropped; deliveries for queues the worker does not
-- serve go back. Reply: [[[delivery, attempt, run fields, metadata], ...], more] where more
-- is true when it stopped for want of attempt ids with deliveries possibly left.

local function fetch_start()
  local worker = args.worker_id
  redis.call("SET", key("wk:" .. worker), "1", "PX", args.heartbeat_ms)
  redis.call("SADD", key("workers"), worker)
  local inflight = key("inflight:" .. worker)
  local queues = nil
  if args.queues ~= NULL then
    queues = {}
    for _, queue in ipairs(args.queues) do queues[queue] = true end
  end
  local known = {}
  for _, task in ipairs(args.tasks) do known[task] = true end
  local out = {}
  local used_ids = 0
  for _, task in ipairs(args.tasks) do
    local list = key("bq:" .. enc(task))
    local skipped = 0
    local length = nil
    while #out < args.max do
      local message = redis.call("LPOP", list)
      if not message then break end
      local delivery = cjson.decode(message)  -- [run id, task, queue, machine]
      if queues and not queues[delivery[3]] then
        redis.call("RPUSH", list, message)  -- another worker's queue: back to the end
        skipped = skipped + 1
        length = length or redis.call("LLEN", list)
        if skipped >= length then break end
      else
        used_ids = used_ids + 1
        local attempt, run, md_set = start(delivery[1], worker, known, args.lease_until,
                                           args.defaults[task] or 1, args.attempt_ids[used_ids])
        if attempt then
          redis.call("HSET", inflight, delivery[1], message)
          out[#out + 1] = started_json(delivery[1], attempt, run, md_set,
                                       cjson.encode(message) .. ",")
        end
        if used_ids >= #args.attempt_ids then break end
      end
    end
    if #out >= args.max or used_ids >= #args.attempt_ids then break end
  end
  return "[[" .. table.concat(out, ",") .. "]," .. tostring(used_ids >= #args.attempt_ids) .. "]"
end

return fetch_start
