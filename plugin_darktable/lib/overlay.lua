--[[
    ase/lib/overlay: the saliency overlay, shown in ase-viewer or imported beside the photo
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local panel = require "ase/lib/panel"
local prefs = require "ase/lib/prefs"
local state = require "ase/lib/state"
local util = require "ase/lib/util"

local overlay = {}

overlay.SUFFIX = ".saliency.png"

-- a saliency map import_overlay imported (auto mode leaves these alone)
function overlay.is_overlay(image)
  local name = image.filename or ""
  return name:sub(-#overlay.SUFFIX) == overlay.SUFFIX
end

local function command_exists(cmd)
  if cmd:find("/") then return util.file_exists(cmd) end
  local ok = os.execute("command -v " .. util.sh_quote(cmd) .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

-- open `image` (default: the first image to act on) in ase-viewer, detached; false when it could not
function overlay.show(image)
  image = image or panel.target_images()[1]
  if not image then
    dt.print(_("ASE critic: select an image first"))
    return false
  end
  local viewer = prefs.viewer_cmd()
  if not command_exists(viewer) then
    state.notify(string.format(_("ASE critic: %s not found: set its path in preferences > lua options"), viewer))
    return false
  end
  local cmd = util.sh_quote(viewer)
  local endpoint = prefs.endpoint()
  if endpoint ~= "" then cmd = cmd .. " --endpoint " .. util.sh_quote(endpoint) end
  cmd = cmd .. " -- " .. util.sh_quote(state.image_path(image)) .. " </dev/null >/dev/null 2>&1 &"
  state.log("running " .. cmd)
  dt.control.execute(cmd)  -- detached: returns at once
  return true
end

-- import each image's saliency map (a grayscale PNG beside the photo) and group it with the photo;
-- returns the imported images
function overlay.import(images)
  images = images or panel.target_images()
  local imported = {}
  for _i, image in ipairs(images) do
    local res = state.cache[image.id]
    if res and res.saliency and util.file_exists(res.saliency) then
      local dest = image.path .. "/" .. image.filename .. overlay.SUFFIX
      if util.copy_file(res.saliency, dest) then
        local img = dt.database.import(dest)
        if img then
          img:group_with(image)
          table.insert(imported, img)
        end
      end
    end
  end
  if #images == 0 then
    dt.print(_("ASE critic: select images first"))
  else
    dt.print(string.format(_("ASE critic: imported %d saliency map(s)"), #imported))
  end
  return imported
end

return overlay
