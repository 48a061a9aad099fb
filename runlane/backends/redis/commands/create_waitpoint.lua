-- create_waitpoint: record a waitpoint (args.wait) that waits on no runs (a time, or a
-- trigger without waiting). Reply: "1".

local function create_waitpoint_command()
  create_waitpoint(args.wait, {}, now)
  return "1"
end

return create_waitpoint_command
