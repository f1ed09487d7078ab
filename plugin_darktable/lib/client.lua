--[[
    ase/lib/client: one ase-client process over a batch of images, and the exports it critiques

    The images are critiqued as developed: each is exported through darktable's pipeline as a JPEG of at most
    EXPORT_SIZE px into a private session folder; the original file is used only when that export fails.
    ase-client runs through /bin/sh under io.popen, read line by line with dt.control.read so that darktable's
    Lua lock is free while it waits; its pid is kept so that a cancel can kill it at once.
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local lines = require "ase/lib/lines"
local prefs = require "ase/lib/prefs"
local state = require "ase/lib/state"
local util = require "ase/lib/util"

local client = {}

client.EXPORT_SIZE = 1024  -- longest side of the JPEG the critic sees

local sh_quote = util.sh_quote

-- the session's private folder (exports, saliency maps, the client's stderr); created on first use
function client.session_dir()
  if state.session_dir then return state.session_dir end
  local base = os.tmpname()  -- a fresh private name (the file it creates is replaced by the folder)
  os.remove(base)
  local dir = base .. "_ase_critic"
  os.execute("mkdir -p " .. sh_quote(dir .. "/saliency"))
  state.session_dir = dir
  return dir
end

-- remove the session folder (at exit)
function client.remove_session_dir()
  local dir = state.session_dir
  if dir and dir:match("_ase_critic$") then os.execute("rm -rf " .. sh_quote(dir)) end
  state.session_dir = nil
end

local exporter = nil

-- the developed image as a JPEG at model resolution; the original file when the export fails.
-- Returns the file and whether it is an export (to remove once critiqued)
function client.export_for_critique(image)
  local ok_fmt, err = pcall(function()
    if not exporter then
      exporter = dt.new_format("jpeg")
      exporter.max_width = client.EXPORT_SIZE
      exporter.max_height = client.EXPORT_SIZE
      pcall(function() exporter.quality = 92 end)
    end
  end)
  if ok_fmt then
    local stem = image.filename:gsub("%.[^.]*$", ""):gsub("[^%w%-_.]", "_")
    local name = string.format("%s/%d-%s.jpg", client.session_dir(), image.id, stem)
    os.remove(name)
    -- write_image's return value is unreliable (false on success on 4.2): the file decides
    pcall(function() exporter:write_image(image, name) end)
    if util.file_exists(name) then return name, true end
    state.log("export failed for " .. state.image_path(image) .. ", critiquing the original file")
  else
    state.log("no jpeg format: " .. tostring(err))
  end
  return state.image_path(image), false
end

-- stop a running ase-client (and anything it started)
function client.kill(pid)
  pid = tonumber(pid)
  if pid then
    os.execute(string.format("pkill -TERM -P %d >/dev/null 2>&1; kill -TERM %d >/dev/null 2>&1", pid, pid))
  end
end

local function command(files, errfile)
  local parts = { sh_quote(prefs.client_cmd()) }
  local endpoint = prefs.endpoint()
  if endpoint ~= "" then
    table.insert(parts, "--endpoint " .. sh_quote(endpoint))
  end
  table.insert(parts, "--timeout " .. tostring(prefs.timeout()))
  table.insert(parts, "critique --format lines --saliency-out " .. sh_quote(client.session_dir() .. "/saliency"))
  local profile = prefs.profile()
  if profile ~= "" then table.insert(parts, "--profile " .. sh_quote(profile)) end  -- adds personal_score
  table.insert(parts, "--")
  for _i, f in ipairs(files) do table.insert(parts, sh_quote(f)) end
  -- the shell prints its pid and becomes ase-client (exec), so that cancel can stop it
  return "echo $$; exec " .. table.concat(parts, " ") .. " </dev/null 2>" .. sh_quote(errfile)
end

-- why a run that ended with exit `code` failed (nil: it did not)
local function failure(code, n, nfiles, garbage, stderr)
  if code == 0 or (code == 1 and n > 0) then
    if n == 0 and nfiles > 0 then
      return _("unexpected output from ase-client: ") .. util.shorten(garbage[1] or _("nothing"), 120)
    end
    return nil
  end
  local detail = util.last_line(stderr)
  if code == 127 or code == 126 then
    return string.format(_("ase-client not found (%s): set its path in preferences > lua options"),
      prefs.client_cmd())
  elseif code == 3 then
    return _("the ASE daemon is not available: ") .. (detail ~= "" and detail or _("start ase-daemon"))
  elseif code == 2 then
    return _("ase-client usage error: ") .. detail
  end
  if detail == "" then detail = garbage[1] or "" end
  return string.format(_("ase-client failed (exit %s): %s"), tostring(code), util.shorten(detail, 200))
end

-- one ase-client run over `files`; on_block(block, index) for each block as it arrives. job: the running
-- job's state ({ cancelled, pid, serial }); its pid is set while the client runs.
-- Returns ok, message (message: why the whole run failed)
function client.run(files, job, on_block)
  local errfile = client.session_dir() .. "/client-" .. tostring(job.serial) .. ".err"
  local cmd = command(files, errfile)
  state.log("running " .. cmd)
  local p = io.popen(cmd, "r")
  if not p then return false, _("could not start ase-client") end
  p:setvbuf("no")  -- readiness of the pipe must mean a line is there (see dt.control.read)
  dt.control.read(p)
  job.pid = tonumber(p:read("l"))
  if job.cancelled then client.kill(job.pid) end
  local parser, n = lines.new_parser(), 0
  while true do
    dt.control.read(p)  -- waits without holding darktable's Lua lock
    local line = p:read("l")
    if not line then break end
    local block = parser.feed(line)
    if block then
      n = n + 1
      on_block(block, n)
    end
  end
  local _ok, how, code = p:close()
  job.pid = nil
  local stderr = util.read_file(errfile) or ""
  os.remove(errfile)
  if job.cancelled then return false, _("cancelled") end
  if how == "signal" then
    return false, string.format(_("ase-client was killed (signal %s)"), tostring(code))
  end
  local message = failure(code, n, #files, parser.garbage, stderr)
  return message == nil, message
end

return client
