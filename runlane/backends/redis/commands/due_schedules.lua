-- due_schedules: the active schedules whose next tick is at or before args.now, earliest
-- first, at most args.limit. Reply: a JSON list with, for each, its fields in the order of
-- SCHEDULE_FIELDS (text as stored; null when absent): one document however many are due.

local function due_schedules()
  local ids = redis.call("ZRANGEBYSCORE", key("schdue"), "-inf", as_text(args.now),
                         "LIMIT", 0, args.limit)
  local due = {}
  for _, id in ipairs(ids) do
    local values = redis.call("HMGET", key("sch:" .. id), unpack(SCHEDULE_FIELDS))
    if values[1] then
      for i = 1, #SCHEDULE_FIELDS do
        if not values[i] then values[i] = NULL end
      end
      due[#due + 1] = values
    end
  end
  return json_list(due)
end

return due_schedules
