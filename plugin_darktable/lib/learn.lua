--[[
    ase/lib/learn: "learn from my ratings": `ase-mllm learn` on the rated images of the current collection, in a
    background job (progress from its "features: n/N" lines, cancellable), then the agreement figures it printed.

    The ratings are read from the photos' XMP sidecars (`--from-xmp FILE...`), which darktable keeps in step with
    its library (stars and the reject). The profile is written under the preference "profile" (or "default"), and
    when that preference is empty it is set, so that the next critiques carry the personal score. The features are
    computed with the model in the preference "learn_model" (the daemon's model folder), else ase-mllm's default
    (ASE_MODEL, or the built-in starter model, as the daemon's default): a profile only works with the model the
    daemon runs.
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local json = require "ase/lib/json"
local panel = require "ase/lib/panel"
local prefs = require "ase/lib/prefs"
local proc = require "ase/lib/proc"
local state = require "ase/lib/state"
local util = require "ase/lib/util"

local learn = {}

learn.DEFAULT_PROFILE = "default"

-- the current collection's images that carry a rating (-1 reject, 1..5 stars; 0 stars is "not rated")
function learn.rated_images()
  local out, seen = {}, {}
  local coll = dt.collection
  for i = 1, #coll do
    local image = coll[i]
    local path = state.image_path(image)
    if image.rating ~= 0 and not seen[path] then
      seen[path] = true
      table.insert(out, image)
    end
  end
  return out
end

local function command(files, profile)
  local parts = { util.sh_quote(prefs.mllm_cmd()), "learn --json --profile", util.sh_quote(profile) }
  local model = prefs.string("learn_model", "")
  if model ~= "" then table.insert(parts, "--model " .. util.sh_quote(model)) end
  table.insert(parts, "--from-xmp")
  for _i, f in ipairs(files) do table.insert(parts, util.sh_quote(f)) end
  return table.concat(parts, " ")
end

-- "profile 'me' from 24 ratings: personal +0.475, generic +0.144 (...)"
function learn.summary(res)
  return string.format(_("profile '%s' learnt from %d ratings; agreement with them (Spearman, cross-validated):\n" ..
    "personal score %+.3f\ngeneric score %+.3f"), tostring(res.profile), tonumber(res.n_ratings) or 0,
    tonumber(res.personal_srcc) or 0, tonumber(res.generic_srcc) or 0)
end

-- learn from `images` and wait (from a background thread). Returns ase-mllm's JSON outcome (nil on failure) and
-- a message (the figures, or why it failed)
function learn.images(images)
  local files = {}
  for _i, image in ipairs(images) do table.insert(files, state.image_path(image)) end
  local profile = prefs.string("profile", learn.DEFAULT_PROFILE)
  state.running = state.running + 1
  local run = proc.job(string.format(_("ASE learn from %d rating(s)"), #files))
  local outcome, last = nil, ""
  panel.set_status(string.format(_("learning from %d rated image(s)..."), #files))
  local ok, code = pcall(proc.run, run, command(files, profile), function(line)
    local rec = line:sub(1, 1) == "{" and json.decode(line) or nil
    local done, total = line:match("features: (%d+)/(%d+)")
    if type(rec) == "table" then
      outcome = rec
    elseif done then
      proc.progress(run, tonumber(done) / math.max(1, tonumber(total)))
      panel.set_status(string.format(_("learning: features %s/%s..."), done, total))
    elseif util.trim(line) ~= "" then
      last = util.trim(line)
    end
  end, true)  -- stderr merged: its "features: n/N" lines are the progress
  proc.finish(run)
  local message
  if not ok then
    message = _("internal error: ") .. tostring(code)
  elseif run.cancelled then
    message = _("cancelled")
  elseif code == 127 or code == 126 then
    message = string.format(_("%s not found: set its path in preferences > lua options"), prefs.mllm_cmd())
  elseif code ~= 0 or not outcome then
    message = last:gsub("^ase%-mllm learn: ", "")
    if message == "" then message = string.format(_("ase-mllm learn failed (exit %s)"), tostring(code)) end
  end
  state.running = state.running - 1
  if message then
    state.notify(_("ASE learn: ") .. message)
    panel.set_learn_result(_("learning failed: ") .. message)
    panel.set_status(message)
    return nil, message
  end
  if prefs.string("profile", "") == "" then
    dt.preferences.write(prefs.MODULE, "profile", "string", profile)
  end
  local summary = learn.summary(outcome)
  state.notify(_("ASE learn: ") .. summary:gsub("\n", "; "))
  panel.set_learn_result(summary)
  panel.set_status(string.format(_("profile '%s' saved; critiques use it"), profile))
  return outcome, summary
end

-- the button: learn from the current collection's rated images in a background thread; returns at once
function learn.collection()
  local images = learn.rated_images()
  if #images == 0 then
    dt.print(_("ASE critic: no rated images in the current collection"))
    return
  end
  state.running = state.running + 1
  dt.control.dispatch(function(imgs)
    local ok, err = pcall(learn.images, imgs)
    state.running = state.running - 1
    if not ok then dt.print_error("[ase_critic] " .. tostring(err)) end
  end, images)
end

return learn
