--[[
    ase/lib/proc: a long-running command (ase-client cull, ase-mllm learn) in a background darktable job

    The command runs through /bin/sh under io.popen and is read line by line with dt.control.read (darktable's
    Lua lock stays free while it waits); its pid is kept so that the job's cancel button can stop it at once.
    Call proc.job and proc.run from a background thread (dt.control.dispatch).
]]

local dt = require "darktable"
local client = require "ase/lib/client"
local state = require "ase/lib/state"
local util = require "ase/lib/util"

local proc = {}

-- a run's state: { cancelled, pid, job (darktable's), serial, cancel }. run.cancel() (the job's cancel button,
-- critique.cancel_all at exit) marks it cancelled, then calls on_cancel(run) when given (which then decides when to
-- stop the process), else stops the process at once
function proc.job(label, on_cancel)
  state.serial = state.serial + 1
  local run = { cancelled = false, pid = nil, serial = state.serial }
  function run.cancel()
    run.cancelled = true
    if on_cancel then
      pcall(on_cancel, run)
    else
      client.kill(run.pid)
    end
  end
  if state.has_gui then
    run.job = dt.gui.create_job(label, true, function() run.cancel() end)
  end
  state.jobs[run] = true
  return run
end

function proc.progress(run, fraction)
  if run.job then pcall(function() run.job.percent = math.max(0, math.min(1, fraction)) end) end
end

function proc.finish(run)
  if run.job then pcall(function() run.job.valid = false end) end
  state.jobs[run] = nil
end

-- run `cmd` (a /bin/sh command line); on_line(line) for each line of its stdout as it arrives. stderr goes to
-- a file of the session folder, or with merge_stderr into stdout (for progress a command prints there).
-- Returns the exit code (nil when killed by a signal) and stderr's text.
function proc.run(run, cmd, on_line, merge_stderr)
  local errfile = client.session_dir() .. "/proc-" .. tostring(run.serial) .. ".err"
  local full = "echo $$; exec " .. cmd .. " </dev/null 2>" .. (merge_stderr and "&1" or util.sh_quote(errfile))
  state.log("running " .. full)
  local p = io.popen(full, "r")
  if not p then return nil, "could not start " .. cmd end
  p:setvbuf("no")
  dt.control.read(p)
  run.pid = tonumber(p:read("l"))
  if run.cancelled then client.kill(run.pid) end
  while true do
    dt.control.read(p)  -- waits without holding darktable's Lua lock
    local line = p:read("l")
    if not line then break end
    on_line(line)
  end
  local _ok, how, code = p:close()
  run.pid = nil
  local stderr = util.read_file(errfile) or ""
  os.remove(errfile)
  if how == "signal" then return nil, stderr end
  return code, stderr
end

-- the client's common options: the command, the endpoint and the timeout, as one shell string
function proc.client_prefix(prefs)
  local parts = { util.sh_quote(prefs.client_cmd()) }
  local endpoint = prefs.endpoint()
  if endpoint ~= "" then table.insert(parts, "--endpoint " .. util.sh_quote(endpoint)) end
  table.insert(parts, "--timeout " .. tostring(prefs.timeout()))
  return table.concat(parts, " ")
end

return proc
