--[[
  Test harness for the ase_critic plugin inside a real darktable (tests/darktable/test_plugin.py).

  A driver runs after luarc (so the plugin is loaded), does its work in a background Lua thread
  (dt.control.dispatch), reports facts as key<TAB>value lines into $ASE_DT_RESULT and always quits darktable,
  PASS or FAIL. The Python test makes the assertions.
]]

local dt = require "darktable"

local H = {}

local out = assert(io.open(os.getenv("ASE_DT_RESULT"), "w"))

-- tell the test that darktable got as far as running the driver (it retries a darktable stuck at startup)
do
  local started = assert(io.open(os.getenv("ASE_DT_RESULT") .. ".started", "w"))
  started:write("started\n")
  started:close()
end

local function esc(v)
  return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub("\t", "\\t"))
end

function H.report(key, value)
  out:write(esc(key), "\t", esc(value), "\n")
  out:flush()
end

function H.env(name)
  local value = os.getenv(name)
  assert(value, "missing environment variable " .. name)
  return value
end

function H.lines(s)
  local t = {}
  for line in s:gmatch("[^\n]+") do table.insert(t, line) end
  return t
end

-- poll cond() every 100 ms for up to `seconds`; true when it held
function H.wait(cond, seconds)
  local waited = 0
  while not cond() do
    if waited >= seconds * 1000 then return false end
    dt.control.sleep(100)
    waited = waited + 100
  end
  return true
end

-- the image's tags under `root`, sorted, joined by ";"
function H.tags(image, root)
  local names = {}
  for _, tag in ipairs(dt.tags.get_tags(image)) do
    if tag.name:sub(1, #root + 1) == root .. "|" then table.insert(names, tag.name) end
  end
  table.sort(names)
  return table.concat(names, ";")
end

function H.file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- one image's state: tags under root, rating, description, the plugin's cached score
function H.report_image(prefix, image, root, ase)
  H.report(prefix .. ".file", tostring(image))
  H.report(prefix .. ".tags", H.tags(image, root))
  H.report(prefix .. ".rating", image.rating)
  H.report(prefix .. ".description", image.description or "")
  local res = ase.result_for(image)
  H.report(prefix .. ".critiqued", res ~= nil)
  if res then
    H.report(prefix .. ".score", string.format("%.3f", res.score))
    H.report(prefix .. ".text", res.text)
    H.report(prefix .. ".saliency_exists", res.saliency ~= nil and H.file_exists(res.saliency))
  end
end

-- run fn in a background thread; report PASS/FAIL; quit darktable whatever happens.
-- opts.wait_ready = false: do not wait for the plugin's setup (a plugin that refused to load has none)
function H.run(fn, opts)
  dt.control.dispatch(function()
    local ok, err = xpcall(function()
      if not (opts and opts.wait_ready == false) then
        -- the plugin sets itself up a moment after startup (see "main" in ase_critic.lua); so does the driver
        local ase = require "ase/ase_critic"
        assert(H.wait(ase.ready, 60), "the plugin did not finish its setup")
      end
      fn()
    end, function(e) return debug and debug.traceback(tostring(e), 2) or tostring(e) end)
    H.report("driver", ok and "PASS" or ("FAIL " .. tostring(err)))
    out:close()
    dt.control.sleep(200)
    dt.gui.action("global/quit", 0, "", "", 1.0)
  end)
end

return H
