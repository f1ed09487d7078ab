--[[
    ase/lib/apply: put a critique on its image (tags, description, star rating), by hand or as it arrives
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local panel = require "ase/lib/panel"
local prefs = require "ase/lib/prefs"
local rating = require "ase/lib/rating"
local state = require "ase/lib/state"
local tags = require "ase/lib/tags"

local apply = {}

local function describe(image, res)
  image.description = res.text
end

local function rate(image, res)
  image.rating = rating.of(res)
end

-- a critique just arrived: apply what the *_auto preferences ask for
function apply.result(image, res)
  if prefs.bool("apply_tags_auto") then tags.apply(image, res) end
  if prefs.bool("write_description_auto") then describe(image, res) end
  if prefs.bool("set_rating_auto") then rate(image, res) end
end

-- run fn(image, res) on every image that has a critique, say how it went; returns how many it ran on
local function for_critiqued(images, what, fn)
  local done, missing = 0, 0
  for _i, image in ipairs(images) do
    local res = state.cache[image.id]
    if res then
      fn(image, res)
      done = done + 1
    else
      missing = missing + 1
    end
  end
  if #images == 0 then
    dt.print(_("ASE critic: select images first"))
  elseif missing > 0 then
    dt.print(string.format(_("ASE critic: %s %d image(s); %d not critiqued yet"), what, done, missing))
  else
    dt.print(string.format(_("ASE critic: %s %d image(s)"), what, done))
  end
  return done
end

-- the buttons: `images` defaults to darktable's images to act on

function apply.tags(images)
  return for_critiqued(images or panel.target_images(), _("tagged"), tags.apply)
end

function apply.description(images)
  return for_critiqued(images or panel.target_images(), _("described"), describe)
end

function apply.rating(images)
  return for_critiqued(images or panel.target_images(), _("rated"), rate)
end

return apply
