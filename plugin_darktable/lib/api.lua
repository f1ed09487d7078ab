--[[
    ase/lib/api: the darktable Lua API version check, in the manner of lua-scripts' du.check_min_api_version

    local api = require "ase/lib/api"
    if not api.check_min_api_version("9.0.0", "ase_critic", "darktable 4.2") then return script_data end

    Versions are compared part by part as numbers ("10.0.0" is newer than "9.6.0", which a string comparison
    gets wrong). Unlike lua-scripts' version this one returns false instead of raising: an error in a script
    required from luarc would stop every later line of the user's luarc.
]]

local dt = require "darktable"

local api = {}

-- "9.1.0" -> { 9, 1, 0 }; missing or non-numeric parts count as 0
local function parts(version)
  local t = {}
  for p in tostring(version or ""):gmatch("[^.]+") do table.insert(t, tonumber(p:match("^%d+")) or 0) end
  while #t < 3 do table.insert(t, 0) end
  return t
end

-- -1, 0 or 1 as version a is older than, equal to or newer than version b
function api.compare_versions(a, b)
  local pa, pb = parts(a), parts(b)
  for i = 1, math.max(#pa, #pb) do
    local x, y = pa[i] or 0, pb[i] or 0
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end

-- darktable's Lua API version as a string; older releases have only the numeric fields
function api.current()
  local c = dt.configuration
  local ok, s = pcall(function() return c.api_version_string end)
  if ok and type(s) == "string" and s ~= "" then return s end
  return string.format("%d.%d.%d", c.api_version_major or 0, c.api_version_minor or 0,
    c.api_version_patchlevel or 0)
end

function api.at_least(min_api)
  return api.compare_versions(api.current(), min_api) >= 0
end

-- true when darktable's Lua API is min_api or newer; otherwise says why `script_name` does not load
-- (darktable's log and a toast) and returns false. release: the darktable release that has min_api, for
-- the message ("darktable 4.2")
function api.check_min_api_version(min_api, script_name, release)
  if api.at_least(min_api) then return true end
  local current = api.current()
  local needs = release and string.format("%s or newer (Lua API %s)", release, min_api)
    or string.format("Lua API %s or newer", min_api)
  dt.print_error(string.format("%s needs Lua API %s or later; this darktable has %s", script_name, min_api, current))
  dt.print(string.format("ERROR: %s not loaded: it needs %s, this is Lua API %s", script_name, needs, current))
  return false
end

return api
