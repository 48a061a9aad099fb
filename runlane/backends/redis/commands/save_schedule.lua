-- save_schedule: create or replace the schedule args.row (see Store.save_schedule). A row
-- whose deduplication_key another schedule has replaces that one; a row whose id exists
-- replaces it; either keeps the stored id, created_at and last_at. A DECLARATIVE row (with a
-- generation) replaces nothing a later generation wrote, and keeps the stored next tick when
-- its declaration is unchanged. Reply: [written ("1"/"0"), the stored hash as a flat list].

local function schedule_key(id) return key("sch:" .. id) end

local function stored_schedule(id)
  local flat = redis.call("HGETALL", schedule_key(id))
  if #flat == 0 then return nil end
  local row = {}
  for i = 1, #flat, 2 do row[flat[i]] = flat[i + 1] end
  return row
end

local function save_schedule()
  local row = args.row
  local stored_id = false
  if given(row.deduplication_key) then
    stored_id = redis.call("GET", key("schdd:" .. enc(row.deduplication_key)))
  end
  if not stored_id and redis.call("EXISTS", schedule_key(row.id)) == 1 then
    stored_id = row.id
  end
  local id = stored_id or row.id
  local fresh = {}
  for _, name in ipairs(SCHEDULE_FIELDS) do fresh[name] = given(row[name]) end
  fresh.active = row.active and "1" or "0"
  if stored_id then
    local stored = stored_schedule(stored_id)
    if given(row.generation) and stored.generation and stored.generation > row.generation then
      return cjson.encode({"0", redis.call("HGETALL", schedule_key(id))})
    end
    fresh.id, fresh.created_at, fresh.last_at = id, stored.created_at, stored.last_at or false
    if given(row.generation) and stored.cron == row.cron and stored.timezone == row.timezone
        and stored.task == row.task then
      fresh.next_at = stored.next_at or false  -- the same declaration: its tick stays
    end
    if stored.deduplication_key and stored.deduplication_key ~= fresh.deduplication_key then
      redis.call("DEL", key("schdd:" .. enc(stored.deduplication_key)))
    end
    if stored.task ~= fresh.task then
      redis.call("ZREM", key("schix:" .. enc(stored.task)), id)
    end
    redis.call("DEL", schedule_key(id))
  end
  local fields = {}
  for _, name in ipairs(SCHEDULE_FIELDS) do
    local v = fresh[name]
    if v then
      fields[#fields + 1] = name
      fields[#fields + 1] = as_text(v)
    end
  end
  redis.call("HSET", schedule_key(id), unpack(fields))
  if fresh.deduplication_key then
    redis.call("SET", key("schdd:" .. enc(fresh.deduplication_key)), id)
  end
  local created = as_text(fresh.created_at)
  redis.call("ZADD", key("schix"), created, id)
  redis.call("ZADD", key("schix:" .. enc(fresh.task)), created, id)
  if fresh.active == "1" and fresh.next_at then
    redis.call("ZADD", key("schdue"), as_text(fresh.next_at), id)
  else
    redis.call("ZREM", key("schdue"), id)
  end
  return cjson.encode({"1", redis.call("HGETALL", schedule_key(id))})
end

return save_schedule
