-- docs/img/darktable-panel.png (scripts/darktable_screenshot.sh): import the photos, critique one, show the
-- panel expanded with the critique, grab the screen with xwd, quit
local dt = require "darktable"
local H = dofile(os.getenv("ASE_DT_HARNESS"))
local ase = require "ase/ase_critic"

H.run(function()
  local folder = H.env("ASE_DT_FOLDER")
  local pick = H.env("ASE_DT_PICK")
  dt.database.import(folder)  -- a background job: wait for the image
  local chosen
  H.wait(function()
    for _, image in ipairs(dt.database) do
      if image.path == folder and image.filename == pick then chosen = image end
    end
    return chosen ~= nil
  end, 60)
  assert(chosen, "no " .. pick .. " in " .. folder)
  dt.control.sleep(1000)  -- the rest of the folder
  -- only our panel open on the right
  for _, lib in pairs(dt.gui.libs) do
    pcall(function() if lib.id ~= "ase_critic" then lib.expanded = false end end)
  end
  dt.gui.libs.ase_critic.expanded = true
  dt.gui.selection({ chosen })
  local results, failures, message = ase.critique_images({ chosen })
  assert(results[chosen.id], "critique failed: " .. tostring(message))
  ase.display(chosen)
  dt.control.sleep(2500)  -- let darktable draw the thumbnails and the panel
  local shot = H.env("ASE_DT_SHOT")
  dt.control.execute("xwd -root -silent > '" .. shot .. "'")
  H.report("shot", H.file_exists(shot))
  H.report("text", ase.widgets.critique.text)
end)
