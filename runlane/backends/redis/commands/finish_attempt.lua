-- finish_attempt: the attempt's outcome is recorded: the run takes its status (final,
-- REATTEMPTING with a retry_at), gives its slots back, and what waited on it or for its slot
-- moves on. Plain arguments (see parse; each unset one nil, never cjson's null). Reply: "1",
-- or "0" when the attempt was no longer the run's executing one.

local function parse(argv)
  -- record: the attempt's final record up to its duration (which the call appends) from a
  -- caller that knows the attempt as its start left it; used_ms: the attempt's duration
  -- then. Unset: the call reads the record. purge_at: now + the retention (see retain)
  local purge_at, attempt, attempt_ms = plain_number(argv[4]), plain_number(argv[6]),
                                        plain_number(argv[10])
  local record, used_ms, retry_at, limit = plain_string(argv[11]), plain_number(argv[12]),
                                           plain_number(argv[14]), plain_number(argv[17])
  if not attempt or purge_at == false or attempt_ms == false or used_ms == false
      or retry_at == false or limit == false or (record == nil) ~= (used_ms == nil)
      or argv[5] == "" or argv[7] == "" or (argv[8] or "") == "" then
    return nil, "take, purge_at, run_id, attempt, attempt_status, run_status, output, "
      .. "attempt_ms, record, used_ms (with record), error, retry_at, machine, ack, "
      .. "env_limit, direct"
  end
  return {now = argv[2], take = argv[3] == "1", purge_at = purge_at and argv[4],
          run_id = argv[5], attempt = attempt,
          outcome = {attempt_status = argv[7], run_status = argv[8],
                     output = plain_string(argv[9]), attempt_ms = attempt_ms,
                     error = plain_string(argv[13]), retry_at = retry_at and argv[14],
                     machine = plain_string(argv[15])},
          record = record, used_ms = used_ms, ack = plain_string(argv[16]), env_limit = limit,
          direct = plain_string(argv[18])}
end

local function finish_attempt()
  local id, attempt = args.run_id, as_text(args.attempt)
  local run_hash = run_key(id)
  settle(id)
  local run = redis.call("HMGET", run_hash, "status", "attempt_count", "duration_ms",
                         "segment_started_at", unpack(SLOT))
  if run[1] ~= "EXECUTING" or run[2] ~= attempt then
    release_stopped(id, run[1], run[2], args.attempt)  -- canceled before the worker stopped it
    return reply("0")
  end
  local outcome = args.outcome
  local attempts_key = key("att:" .. id)
  -- the attempt's record: written from what the caller knows of it (args.record, its
  -- duration when it started args.used_ms), else read and rewritten (a caller that did not
  -- start it)
  local record, used = nil, args.used_ms
  if not args.record then
    local raw = redis.call("HGET", attempts_key, attempt)
    record = raw and cjson.decode(raw) or nil
    used = (record and record.duration_ms) or 0
  end
  local elapsed  -- execution time of this stretch: the attempt's own measure when given
  if outcome.attempt_ms == nil then
    elapsed = run[4] and math.max(0, math.floor((now - tonumber(run[4])) * 1000)) or 0
  else
    elapsed = outcome.attempt_ms - used
    if elapsed < 0 then elapsed = 0 end
  end
  local status = outcome.run_status
  local sets = {"status", status, "updated_at", as_text(now), "admitted", "0",
                "duration_ms", as_text(tonumber(run[3] or "0") + elapsed)}
  local dels = {"segment_started_at", "lease_until"}
  if outcome.output then
    if #outcome.output > 524288 then
      redis.call("SET", key("blob:" .. id .. ":output"), outcome.output)
      sets[#sets + 1], sets[#sets + 2] = "output_blob", "1"
      dels[#dels + 1] = "output"
    else
      sets[#sets + 1], sets[#sets + 2] = "output", outcome.output
    end
  end
  if outcome.error then sets[#sets + 1], sets[#sets + 2] = "error", outcome.error
  elseif status == "COMPLETED" then dels[#dels + 1] = "error" end
  if FINAL[status] then sets[#sets + 1], sets[#sets + 2] = "finished_at", as_text(now) end
  if outcome.retry_at then sets[#sets + 1], sets[#sets + 2] = "retry_at", outcome.retry_at end
  if outcome.machine then sets[#sets + 1], sets[#sets + 2] = "machine", outcome.machine end
  redis.call("HSET", run_hash, unpack(sets))
  local queue, freed_ckey = release(id, false, slot_of(run, 5), dels)
  redis.call("HDEL", run_hash, unpack(dels))
  redis.call("ZREM", key("leases"), id)
  move_status(id, status, now, "EXECUTING")
  if args.record then
    redis.call("HSET", attempts_key, attempt, args.record .. as_text(used + elapsed) .. "}")
  elseif record then
    record.status = outcome.attempt_status
    record.finished_at = now
    record.error = outcome.error and cjson.decode(outcome.error) or NULL
    record.duration_ms = (record.duration_ms or 0) + elapsed
    redis.call("HSET", attempts_key, attempt, cjson.encode(record))
  end
  if status == "REATTEMPTING" then
    redis.call("ZADD", key("retry"), outcome.retry_at, id)
  end
  if FINAL[status] then
    -- an EXECUTING run is in no time index (start took it out of ttl; the lease went above)
    retain(id, now)
    finalized({id}, now)
  end
  admit_after(now, env_limit, {}, queue and {queue, freed_ckey or ""} or nil)
  return reply("1")
end

return finish_attempt, parse
