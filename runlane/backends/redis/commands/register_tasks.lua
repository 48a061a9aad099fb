-- register_tasks: record the tasks a worker serves (args.tasks: {id, queue, limit, total})
-- and their queues' limits; their WAITING_FOR_DEPLOY runs are queued.

local function register_tasks()
  local queues = {}
  for _, task in ipairs(args.tasks) do
    redis.call("HSET", key("tasks"), task.id, task.queue)
    upsert_queue(task.queue, task.limit, task.total, true)
    queues[#queues + 1] = task.queue
    local waiting_key = key("wfd:" .. enc(task.id))
    for _, id in ipairs(redis.call("SMEMBERS", waiting_key)) do
      if get(id, "status") == "WAITING_FOR_DEPLOY" then
        if get(id, "queue_given") ~= "1" and get(id, "queue") ~= task.queue then
          -- the task's own queue, unless the trigger chose one
          redis.call("ZREM", key("ix:q:" .. enc(get(id, "queue"))), id)
          redis.call("ZADD", key("ix:q:" .. enc(task.queue)), 0, id)
          redis.call("HSET", run_key(id), "queue", task.queue)
        end
        set_status(id, "QUEUED", now)
        enqueue(id, now)
        queues[#queues + 1] = get(id, "queue")
      end
    end
    redis.call("DEL", waiting_key)
  end
  admit_after(now, env_limit, queues)
  return "1"
end

return register_tasks
