--[[
    ase/lib/state: what the plugin's modules share for the session, and its log

    One table (require returns the same one everywhere): critiques per image, the auto-mode queue, running jobs,
    the panel's widgets.
]]

local dt = require "darktable"

local state = {
  has_gui = dt.configuration.has_gui,
  widgets = {},
  cache = {},            -- image id -> parsed critique (the last good one)
  errors = {},           -- image id -> message of the last failed critique
  culls = {},            -- image id -> its last cull decision ({ decision, reason, group, rank, group_size })
  queue = {},            -- images imported in auto mode, waiting for the worker
  queued = {},           -- image id -> true while in the queue
  worker_running = false,
  running = 0,           -- critique jobs in progress
  serial = 0,            -- numbers the critique jobs (names their stderr files)
  shown_id = nil,        -- the image the panel shows
  module_installed = false,
  event_registered = false,
  setup_done = false,
  session_dir = nil,
  jobs = {},             -- running jobs' state (pid, cancelled), for cancel and exit
}

function state.log(msg)
  dt.print_log("[ase_critic] " .. msg)
end

function state.notify(msg)
  dt.print(msg)
  state.log(msg)
end

-- the image's full path
function state.image_path(image)
  return tostring(image)
end

return state
