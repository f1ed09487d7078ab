--[[
    ase/lib/critique: critique images in a background job: export, ase-client, parse, cache, apply, show

    critique.images blocks until done: call it from dt.control.dispatch (critique.selection does), so that
    darktable stays responsive. The job shows a progress bar and a cancel button in darktable's job list.
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local apply = require "ase/lib/apply"
local client = require "ase/lib/client"
local panel = require "ase/lib/panel"
local state = require "ase/lib/state"

local critique = {}

critique.CHUNK = 8  -- images per ase-client call (progress and cancel granularity)

-- a run's state: what cancel needs (cancelled, pid) and what it collected
local function new_run(images, opts)
  state.serial = state.serial + 1
  local run = { cancelled = false, pid = nil, serial = state.serial, results = {}, failures = 0, message = nil,
                steps = 0, total = #images * 2 }
  if state.has_gui then
    run.job = dt.gui.create_job(opts.label or string.format(_("ASE critique of %d image(s)"), #images), true,
      function(j)
        run.cancelled = true
        client.kill(run.pid)
        if opts.on_cancel then opts.on_cancel() end
      end)
  end
  return run
end

-- progress: one step per export and one per critique
local function step(run)
  run.steps = run.steps + 1
  if run.job then pcall(function() run.job.percent = math.min(1, run.steps / run.total) end) end
end

-- one image's block arrived: cache it and apply it, or remember why it failed
local function record(run, image, block)
  if block.error then
    run.failures = run.failures + 1
    state.errors[image.id] = block.error.code .. ": " .. block.error.message
    state.log(state.image_path(image) .. ": " .. state.errors[image.id])
  else
    block.image = state.image_path(image)
    state.cache[image.id] = block
    state.errors[image.id] = nil
    run.results[image.id] = block
    apply.result(image, block)
  end
  if state.shown_id == nil or state.shown_id == image.id then panel.display(image) end
  step(run)
end

-- the images of `chunk` that got no block fail with `message`
local function fail_missing(run, chunk, got, message)
  for _i, image in ipairs(chunk) do
    if not got[image.id] then
      run.failures = run.failures + 1
      state.errors[image.id] = message
    end
  end
end

-- export and critique images[first .. first + CHUNK - 1]. Returns how many images it took and whether the
-- run goes on: not when cancelled, nor when the client failed (the next chunks would fail the same way)
local function critique_chunk(run, images, first)
  local chunk, files, by_file, exported = {}, {}, {}, {}
  for k = first, math.min(#images, first + critique.CHUNK - 1) do
    local image = images[k]
    local file, was_exported = client.export_for_critique(image)
    table.insert(chunk, image)
    table.insert(files, file)
    by_file[file] = image
    if was_exported then table.insert(exported, file) end
    step(run)
    if run.cancelled then break end
  end
  if run.cancelled then return #chunk, false end

  local got = {}
  local ok, message = client.run(files, run, function(block, n)
    local image = by_file[block.image] or chunk[n]
    if not image then return end
    got[image.id] = true
    record(run, image, block)
  end)
  for _i, f in ipairs(exported) do os.remove(f) end
  if not ok then
    run.message = message
    fail_missing(run, chunk, got, message)
    return #chunk, false
  end
  fail_missing(run, chunk, got, _("no result from ase-client"))
  return #chunk, true
end

-- the run is over: one message (toast, log, status line) and the panel refreshed
local function report(run, images)
  local n = 0
  for _k in pairs(run.results) do n = n + 1 end
  if run.cancelled then
    run.message = _("cancelled")
  end
  if run.message then
    state.notify(string.format(_("ASE critic: %s (%d of %d image(s) critiqued)"), run.message, n, #images))
    panel.set_status(run.message)
  else
    local msg = run.failures > 0
      and string.format(_("ASE critic: %d image(s) critiqued, %d failed"), n, run.failures)
      or string.format(_("ASE critic: %d image(s) critiqued"), n)
    dt.print(msg)
    panel.set_status(msg)
  end
  panel.refresh_current()
end

-- Critique `images` and wait for the result (from a background thread).
-- opts.label: the job's label; opts.on_cancel: called when the user cancels the job.
-- Returns { [image.id] = result }, failures (count), message (why the run failed, or nil)
function critique.images(images, opts)
  opts = opts or {}
  if not images or #images == 0 then
    return {}, 0, nil
  end
  state.running = state.running + 1
  local run = new_run(images, opts)
  state.jobs[run] = true
  local ok, err = pcall(function()
    local i = 1
    while i <= #images and not run.cancelled and not dt.control.ending do
      local taken, go_on = critique_chunk(run, images, i)
      i = i + taken
      if not go_on then break end
    end
  end)
  if not ok then
    run.message = _("internal error: ") .. tostring(err)
    dt.print_error("[ase_critic] " .. tostring(err))
  end
  if run.job then pcall(function() run.job.valid = false end) end
  state.jobs[run] = nil
  state.running = state.running - 1
  report(run, images)
  return run.results, run.failures, run.message
end

-- the button and the shortcut: critique the images to act on in a background thread; returns at once
function critique.selection()
  local images = panel.target_images()
  if #images == 0 then
    dt.print(_("ASE critic: select images first"))
    return
  end
  panel.set_status(string.format(_("critiquing %d image(s)..."), #images))
  state.running = state.running + 1  -- busy from the click on, not only once the thread runs
  dt.control.dispatch(function(imgs)
    local ok, err = pcall(critique.images, imgs)
    state.running = state.running - 1
    if not ok then dt.print_error("[ase_critic] " .. tostring(err)) end
  end, images)
end

-- cancel every running job (critiques, culls, learning) and empty the auto-mode queue
function critique.cancel_all()
  for _i, image in ipairs(state.queue) do state.queued[image.id] = nil end
  state.queue = {}
  for run in pairs(state.jobs) do
    if run.cancel then  -- a cull or a learning run (ase/lib/proc): it knows how to stop
      run.cancel()
    else
      run.cancelled = true
      client.kill(run.pid)
    end
  end
end

function critique.busy()
  return state.running > 0 or state.worker_running or #state.queue > 0
end

return critique
