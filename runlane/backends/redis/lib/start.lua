-- runlane Redis store: starting an attempt (start_attempt, and fetch_start for the native
-- broker).

local function start(id, worker_id, known, lease_until, default_max_attempts, attempt_id)
  -- an admitted QUEUED run -> EXECUTING: a new attempt, or the suspended one resumed. Returns
  -- the attempt (JSON text), the run's fields its caller reads as they are after the start
  -- (name -> value) and whether md:<id> exists; nil when the run cannot start
  local run_hash = run_key(id)
  -- read once, for the checks and for the reply; as RESP3 makes it, a map: a table Redis
  -- fills in C (the rest of the call keeps RESP2's replies, nil as false)
  redis.setresp(3)
  local run = redis.call("HGETALL", run_hash).map
  redis.setresp(2)
  if run.status ~= "QUEUED" or run.admitted ~= "1" or not known[run.task] then return nil end
  -- a fetch reads its clock before its call reaches Redis, where a run queued meanwhile may
  -- wait: the start is not dated before the run was queued
  local at = now
  local queued = tonumber(run.updated_at)
  if queued and queued > at then at = queued end
  local number, started_at, used_ms, machine  -- machine: the attempt's, as JSON
  local resumed = run.resume == "1"
  local attempts_key, at_text = key("att:" .. id), as_text(at)
  if resumed then
    number = tonumber(run.attempt_count)
    local record = cjson.decode(redis.call("HGET", attempts_key, as_text(number)))
    record.status = "EXECUTING"
    record.worker_id = worker_id
    redis.call("HSET", attempts_key, as_text(number), cjson.encode(record))
    attempt_id = record.id
    started_at, used_ms = as_text(record.started_at), as_text(record.duration_ms or 0)
    machine = record.machine == nil and "null" or cjson.encode(record.machine)
  else
    number = tonumber(run.attempt_count or "0") + 1
    started_at, used_ms = at_text, "0"
    machine = run.machine and cjson.encode(run.machine) or "null"
    -- written out rather than through cjson, which formats each number with snprintf
    -- (an attempt id is runlane's own: letters, digits and "_", nothing to escape)
    redis.call("HSET", attempts_key, as_text(number), '{"id":"' .. attempt_id .. '","number":'
      .. as_text(number) .. ',"status":"EXECUTING","started_at":' .. at_text
      .. ',"worker_id":' .. cjson.encode(worker_id) .. ',"machine":' .. machine
      .. ',"duration_ms":0}')
  end
  local number_text = as_text(number)
  local sets = {"status", "EXECUTING", "updated_at", at_text, "attempt_count", number_text,
                "worker_id", worker_id, "resume", "0", "segment_started_at", at_text,
                "attempts_allowed", run.max_attempts or as_text(default_max_attempts)}
  local lease = given(lease_until) and as_text(lease_until)
  if lease then
    sets[#sets + 1] = "lease_until"
    sets[#sets + 1] = lease
    redis.call("ZADD", key("leases"), lease, id)
  end
  if not run.started_at then
    sets[#sets + 1] = "started_at"
    sets[#sets + 1] = at_text
  end
  redis.call("HSET", run_hash, unpack(sets))
  move_status(id, "EXECUTING", at, "QUEUED")
  if run.lease_until and not lease then redis.call("HDEL", run_hash, "lease_until") end
  if run.ttl then redis.call("ZREM", key("ttl"), id) end  -- its TTL no longer applies
  -- the fields returned are those the caller reads (RedisStore._started, rows.to_run), as they
  -- are now: the ones this start changed set here, and the run's bookkeeping left out (each
  -- field costs its encoding here and its decoding there)
  local md_set = run.md_set
  run.status, run.updated_at, run.attempt_count = "EXECUTING", at_text, number_text
  run.started_at = run.started_at or at_text
  run.ckey, run.admitted, run.resume, run.queue_given, run.queue_ts = nil
  run.holds_queue, run.holds_env, run.borrowed_from, run.lent_to = nil
  run.worker_id, run.segment_started_at, run.attempts_allowed, run.lease_until = nil
  run.md_set, run.wait_index = nil
  -- the attempt as JSON text (see above), with what its record holds that the caller may not
  -- know (its machine: a finish writes the final record from it, see finish_attempt)
  return '{"attempt_id":"' .. attempt_id .. '","number":' .. number_text .. ',"started_at":'
           .. started_at .. ',"resumed":' .. (resumed and "true" or "false") .. ',"used_ms":'
           .. used_ms .. ',"max_duration":' .. as_text(tonumber(run.max_duration) or "null")
           .. ',"machine":' .. machine .. '}',
         run, md_set
end

local function started_json(id, attempt, run, md_set, lead)
  -- [lead..., attempt, run fields (name -> value), metadata] of a start, as JSON text (lead:
  -- JSON text of elements before them, with its comma, or ""); the metadata is the run's
  -- document once updated (md:<id>, as a JSON string), null while its seed_metadata still is
  local metadata = md_set and redis.call("GET", key("md:" .. id))
  return "[" .. lead .. attempt .. "," .. cjson.encode(run) .. ","
         .. (metadata and cjson.encode(metadata) or "null") .. "]"
end
