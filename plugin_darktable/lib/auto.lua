--[[
    ase/lib/auto: auto mode, every imported image critiqued in the background

    The post-import-image event blocks the import, so its handler only queues the image; a background worker
    drains the queue CHUNK images at a time.
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local critique = require "ase/lib/critique"
local overlay = require "ase/lib/overlay"
local prefs = require "ase/lib/prefs"
local state = require "ase/lib/state"

local auto = {}

local function drop_queue()
  for _i, image in ipairs(state.queue) do state.queued[image.id] = nil end
  state.queue = {}
end

local function worker()
  dt.control.sleep(500)  -- let a folder import queue its images first
  while #state.queue > 0 and not dt.control.ending do
    local batch = {}
    while #batch < critique.CHUNK and #state.queue > 0 do
      local image = table.remove(state.queue, 1)
      state.queued[image.id] = nil
      table.insert(batch, image)
    end
    local _results, _failures, message = critique.images(batch, {
      label = string.format(_("ASE critique of imported images (%d left)"), #state.queue + #batch),
      on_cancel = drop_queue,
    })
    if message and #state.queue > 0 then
      -- a down daemon fails every image the same way: drop the queue, say so once
      state.notify(string.format(_("ASE critic: %d queued image(s) not critiqued"), #state.queue))
      drop_queue()
    end
  end
  state.worker_running = false
end

-- the post-import-image handler
function auto.on_import(event, image)
  if not image or not prefs.bool("auto_on_import") or overlay.is_overlay(image) or state.queued[image.id] then
    return
  end
  state.queued[image.id] = true
  table.insert(state.queue, image)
  if not state.worker_running then
    state.worker_running = true
    dt.control.dispatch(worker)
  end
end

return auto
