-- start_attempt: an admitted QUEUED run -> EXECUTING, its attempt new or resumed. Plain
-- arguments (see parse). Reply: null when it cannot start (not admitted, canceled, a task
-- the worker does not know), else [attempt, run fields, metadata] (see started_json) as one
-- JSON document: decoding that is C code in Python, where a reply array of ~60 strings would
-- be parsed element by element.

local function parse(argv)
  -- the call's arguments (times as their text: stored as they are), or nil and what they
  -- should have been
  local lease, default_max_attempts = plain_number(argv[5]), plain_number(argv[6])
  if #argv < 7 or argv[3] == "" or argv[4] == "" or argv[7] == "" or not default_max_attempts
      or lease == false then
    return nil, "run_id, worker_id, lease_until, default_max_attempts, attempt_id, task ids..."
  end
  local known = {}
  for i = 8, #argv do known[argv[i]] = true end
  return {now = argv[2], run_id = argv[3], worker_id = argv[4], lease_until = lease and argv[5],
          default_max_attempts = default_max_attempts, attempt_id = argv[7], known = known}
end

local function start_attempt()
  local attempt, run, md_set = start(args.run_id, args.worker_id, args.known, args.lease_until,
                                     args.default_max_attempts, args.attempt_id)
  if not attempt then return "null" end
  return started_json(args.run_id, attempt, run, md_set, "")
end

return start_attempt, parse
