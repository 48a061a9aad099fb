-- runlane Redis store: giving slots back. A run that stops executing, is suspended or
-- leaves admission gives back the slots its hash records; admission then looks at what the
-- freed slots let run.

-- a run's slot: fields of its hash, read with the run's queue and key
local SLOT = {"holds_queue", "holds_env", "borrowed_from", "lent_to", "queue", "ckey"}

local function slot_of(fields, i)
  -- the slot in an HMGET reply whose fields i .. i+5 are SLOT's (nil: the run holds none)
  if not fields[i] then return nil end
  return {holds_queue = fields[i], holds_env = fields[i + 1],
          borrowed_from = fields[i + 2] or nil, lent_to = fields[i + 3] or nil,
          queue = fields[i + 4], ckey = fields[i + 5] or ""}
end

local function release(id, keep_queue_slot, slot, dels)
  -- give back the run's slots; returns the queue whose capacity changed (or nil) and the
  -- slot's concurrency key. slot: as the caller read it (slot_of; nil: read here). dels:
  -- the caller deletes the run's fields in an HDEL of its own, the slot's among them
  -- (appended to dels); else they are deleted here
  if dels == nil then slot = slot_of(redis.call("HMGET", run_key(id), unpack(SLOT)), 1) end
  if not slot then return nil end
  if slot.holds_env == "1" then counter("running", -1) end
  if keep_queue_slot then
    redis.call("HSET", run_key(id), "holds_env", "0")
    redis.call("SADD", key("lenders"), id)
    return slot.queue, slot.ckey
  end
  if dels then
    for i = 1, 4 do dels[#dels + 1] = SLOT[i] end
  else
    redis.call("HDEL", run_key(id), "holds_queue", "holds_env", "borrowed_from", "lent_to")
  end
  -- only a slot kept while its run was suspended (holds_env 0) put the run among lenders
  if slot.holds_env ~= "1" then redis.call("SREM", key("lenders"), id) end
  if slot.lent_to and (slot.holds_queue == "1" or slot.borrowed_from) then
    -- the borrower still runs in this slot: it keeps it, so the count stays exact
    local borrower_key = run_key(slot.lent_to)
    if slot.borrowed_from then
      redis.call("HSET", borrower_key, "holds_queue", slot.holds_queue,
                 "borrowed_from", slot.borrowed_from)
      redis.call("HSET", run_key(slot.borrowed_from), "lent_to", slot.lent_to)
    else
      redis.call("HSET", borrower_key, "holds_queue", slot.holds_queue)
      redis.call("HDEL", borrower_key, "borrowed_from")
    end
    return slot.queue, slot.ckey
  end
  if slot.borrowed_from then
    local lender_key = run_key(slot.borrowed_from)
    if redis.call("HGET", lender_key, "lent_to") == id then
      redis.call("HDEL", lender_key, "lent_to")
    end
  elseif slot.holds_queue == "1" then
    local sub_key = key("sq:" .. enc(slot.queue) .. ":" .. enc(slot.ckey or ""))
    if tonumber(redis.call("HINCRBY", sub_key, "running", "-1")) < 0 then
      redis.call("HSET", sub_key, "running", 0)
    end
    local queue_key = key("queue:" .. enc(slot.queue))
    if tonumber(redis.call("HINCRBY", queue_key, "running", "-1")) < 0 then
      redis.call("HSET", queue_key, "running", 0)
    end
  end
  return slot.queue, slot.ckey
end

local function leave(id)
  -- a run leaves admission entirely (final, retried, canceled, expired): slots or its place
  local status = get(id, "status")
  local queue = release(id, false)
  if queue == nil and status == "QUEUED" then leave_waiting(id) end
  redis.call("ZREM", key("resumeq"), id)
  return queue
end

local function admit_after(at, limit, changed, subqueue)
  -- admission after slots were freed or queues changed: with an environment cap every queue
  -- competes for a freed slot; otherwise only what changed: the queues listed (changed), and
  -- one freed sub-queue {queue, ckey} alone when its queue has no total limit (its keys are
  -- independent then: a release stays O(1) with many keys)
  if limit ~= nil and limit ~= NULL then return admit(at, limit, nil) end
  -- nothing waits in any sub-queue (rr), no resumed run waits (resumeq) and no run may lend
  -- its slot (lenders): nobody to admit, whatever changed
  if redis.call("EXISTS", key("rr"), key("resumeq"), key("lenders")) == 0 then return 0 end
  local set = {}
  for _, queue in ipairs(changed) do set[queue] = true end
  local admitted = 0
  if subqueue and not set[subqueue[1]] then
    if redis.call("HEXISTS", key("queue:" .. enc(subqueue[1])), "total") == 1 then
      set[subqueue[1]] = true
    else
      admitted = admit(at, limit, {}, sq_member(subqueue[1], subqueue[2]))
      if next(set) == nil then return admitted end  -- nothing else changed
    end
  end
  return admitted + admit(at, limit, set)
end
