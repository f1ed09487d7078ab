--[[
    ase/lib/cull: "cull selection": the daemon culls the selected photos (ase-client cull, a background job with
    progress and cancel), then darktable shows the result with its own tools: each burst becomes a darktable group
    whose leader is the pick, rejects get the rejected flag, and the panel shows each photo's decision and reason.

    The daemon reads the original files (capture times come from their EXIF). It does not write the sidecars
    (no --apply): darktable owns its sidecars and writes the reject into them itself.
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local client = require "ase/lib/client"
local json = require "ase/lib/json"
local panel = require "ase/lib/panel"
local prefs = require "ase/lib/prefs"
local proc = require "ase/lib/proc"
local state = require "ase/lib/state"
local util = require "ase/lib/util"

local cull = {}

local function command(files)
  local parts = { proc.client_prefix(prefs), "cull --json --progress --" }
  for _i, f in ipairs(files) do table.insert(parts, util.sh_quote(f)) end
  return table.concat(parts, " ")
end

-- the job's cancel: ask the daemon to stop the cull job (in the background: the button must not wait for the
-- socket), then stop ase-client. Before the daemon has said the job's id, ase-client keeps running until it does
-- (the line reader then cancels): killed earlier, it would leave the daemon culling with no one to cancel it.
local function cancel_daemon_job(run)
  if not run.daemon_job then return end
  if not run.cancel_sent then
    run.cancel_sent = true
    dt.control.execute(proc.client_prefix(prefs) .. " cancel " .. util.sh_quote(run.daemon_job) ..
      " </dev/null >/dev/null 2>&1 &")
  end
  client.kill(run.pid)
end

-- darktable's side of the decisions: groups (leader = the pick), rejects. Returns groups, rejects (counts)
function cull.apply(decisions, by_path)
  -- the daemon may name a file by another spelling of its path (a symlinked folder): then by its name, if unique
  local by_name, names = {}, {}
  for path, image in pairs(by_path) do
    local name = path:match("[^/]+$")
    names[name] = (names[name] or 0) + 1
    by_name[name] = image
  end
  local function image_of(path)
    local name = tostring(path):match("[^/]+$")
    return by_path[path] or (name and names[name] == 1 and by_name[name]) or nil
  end
  local groups, order = {}, {}
  for _i, d in ipairs(decisions) do
    local image = image_of(d.path)
    if image then
      state.culls[image.id] = d
      local g = groups[d.group]
      if not g then
        g = { members = {}, seen = {} }
        groups[d.group] = g
        table.insert(order, d.group)
      end
      if not g.seen[image.id] then
        g.seen[image.id] = true
        table.insert(g.members, image)
      end
      if d.decision == "pick" and not g.leader then g.leader = image end
    end
  end
  local n_groups, n_rejects = 0, 0
  for _i, key in ipairs(order) do
    local g = groups[key]
    local leader = g.leader or g.members[1]
    if #g.members > 1 then
      for _j, image in ipairs(g.members) do
        if image.id ~= leader.id then image:group_with(leader) end
      end
      leader:make_group_leader()
      n_groups = n_groups + 1
    end
  end
  for _i, d in ipairs(decisions) do
    local image = image_of(d.path)
    if image and d.decision == "reject" and image.rating ~= -1 then
      image.rating = -1
      n_rejects = n_rejects + 1
    end
  end
  return n_groups, n_rejects
end

-- cull `images` and wait (from a background thread). Returns the decisions (as ase-client printed them) and a
-- message (why the run failed, or nil)
function cull.images(images)
  local files, by_path, seen = {}, {}, {}
  for _i, image in ipairs(images) do
    local path = state.image_path(image)
    if not seen[path] then  -- a duplicate (photo_01) shares its file: cull the file once
      seen[path] = true
      by_path[path] = image
      table.insert(files, path)
    end
  end
  if #files == 0 then return {}, nil end
  state.running = state.running + 1
  local run = proc.job(string.format(_("ASE cull of %d image(s)"), #files), cancel_daemon_job)
  local decisions = {}
  local ok, code, stderr = pcall(proc.run, run, command(files), function(line)
    local rec = json.decode(line)
    if type(rec) ~= "table" then
      state.log("cull: not JSON: " .. util.shorten(line, 200))
    elseif rec.event == "progress" then
      if rec.job and not run.daemon_job then
        run.daemon_job = rec.job
        if run.cancelled then cancel_daemon_job(run) end
      end
      if tonumber(rec.total) and rec.total > 0 then
        proc.progress(run, (tonumber(rec.done) or 0) / rec.total)
        panel.set_status(string.format(_("culling %d/%d..."), tonumber(rec.done) or 0, rec.total))
      end
    elseif rec.path and rec.decision then
      table.insert(decisions, rec)
    end
  end)
  proc.finish(run)
  local message
  if not ok then
    message = _("internal error: ") .. tostring(code)
  elseif run.cancelled then
    message = _("cancelled")
  elseif code ~= 0 then
    message = string.format(_("ase-client cull failed (exit %s): %s"), tostring(code),
      util.shorten(util.last_line(stderr), 200))
  end
  if not message then
    -- ase-client names each file it could not read on stderr, one line each; the rest was culled
    local errors = 0
    for line in tostring(stderr or ""):gmatch("[^\n]+") do
      if line:match("^ase%-client: ") then
        errors = errors + 1
        state.log("cull: " .. line)
      end
    end
    local groups, rejects = cull.apply(decisions, by_path)
    local msg = string.format(_("ASE cull: %d image(s), %d group(s) of bursts, %d rejected"), #decisions, groups,
      rejects)
    if errors > 0 then msg = msg .. string.format(_(", %d unreadable"), errors) end
    state.notify(msg)
    panel.set_status(msg)
  else
    state.notify(_("ASE cull: ") .. message)
    panel.set_status(message)
  end
  state.running = state.running - 1
  panel.refresh_current()
  return decisions, message
end

-- the button: cull the images to act on in a background thread; returns at once
function cull.selection()
  local images = panel.target_images()
  if #images == 0 then
    dt.print(_("ASE critic: select images first"))
    return
  end
  panel.set_status(string.format(_("culling %d image(s)..."), #images))
  state.running = state.running + 1  -- busy from the click on
  dt.control.dispatch(function(imgs)
    local ok, err = pcall(cull.images, imgs)
    state.running = state.running - 1
    if not ok then dt.print_error("[ase_critic] " .. tostring(err)) end
  end, images)
end

return cull
