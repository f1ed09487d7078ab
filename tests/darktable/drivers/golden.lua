-- the plugin's own modules on the shared golden fixture (tests/fixtures/lines_golden.*): the lines parser's
-- blocks as JSON, the stars rating.from_score gives for each score, and the API version comparison
local H = dofile(os.getenv("ASE_DT_HARNESS"))

-- JSON for the parser's values: tables with [1] (or empty) are arrays, others objects with sorted keys
local function json(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    if next(v) == nil or v[1] ~= nil then
      for _, x in ipairs(v) do table.insert(parts, json(x)) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do table.insert(keys, k) end
    table.sort(keys)
    for _, k in ipairs(keys) do table.insert(parts, json(tostring(k)) .. ":" .. json(v[k])) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif t == "number" then
    return math.type(v) == "integer" and string.format("%d", v) or string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  end
  error("no JSON for a " .. t)
end

H.run(function()
  local lines = require "ase/lib/lines"
  local rating = require "ase/lib/rating"
  local api = require "ase/lib/api"

  local f = assert(io.open(H.env("ASE_DT_GOLDEN"), "rb"))
  local text = f:read("a")
  f:close()
  local blocks, garbage = lines.parse(text)
  H.report("blocks", json(blocks))
  H.report("garbage", json(garbage))
  -- fed line by line, as from ase-client's pipe: the same blocks, each returned by the line that ends it
  local parser, returned = lines.new_parser(), {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local block = parser.feed(line)
    if block then table.insert(returned, block) end
  end
  H.report("fed", json(returned))

  local stars = {}
  for _, s in ipairs(H.lines(H.env("ASE_DT_SCORES"))) do table.insert(stars, rating.from_score(tonumber(s))) end
  H.report("stars", table.concat(stars, ","))

  H.report("api.current", api.current())
  H.report("api.compare", table.concat({ api.compare_versions("10.0.0", "9.6.0"),
    api.compare_versions("9.0.0", "9.0.0"), api.compare_versions("9.0", "9.0.0"),
    api.compare_versions("8.9.9", "9.0.0"), api.compare_versions("9.0.1", "9.0.0") }, ","))
  H.report("api.at_least_9", tostring(api.at_least("9.0.0")))
  H.report("api.at_least_99", tostring(api.at_least("99.0.0")))
end)
