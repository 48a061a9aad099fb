-- list_runs: up to args.limit + 1 run ids, newest first: walks the most selective index
-- (args.index) backwards from the cursor (args.max, args.min: lexical bounds), checking the
-- other filters (args.checks: [kind, values], "index" for other indexes, else a run field).
-- Reply: the ids.

local function matches(id)
  for _, check in ipairs(args.checks) do
    local kind, values = check[1], check[2]
    local hit = false
    if kind == "index" then
      for _, index in ipairs(values) do
        if redis.call("ZSCORE", key(index), id) then hit = true break end
      end
    else
      local v = get(id, kind)
      for _, want in ipairs(values) do if v == want then hit = true break end end
    end
    if not hit then return false end
  end
  return true
end

local function list_runs()
  local source = key(args.index)
  local out = {}
  local offset = 0
  local scanned = 0
  while #out <= args.limit and scanned < 100000 do
    local ids = redis.call("ZREVRANGEBYLEX", source, args.max, args.min, "LIMIT", offset, 500)
    if #ids == 0 then break end
    offset = offset + #ids
    for _, id in ipairs(ids) do
      scanned = scanned + 1
      if matches(id) then
        out[#out + 1] = id
        if #out > args.limit then break end
      end
    end
  end
  return json_list(out)
end

return list_runs
