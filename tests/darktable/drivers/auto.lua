-- auto mode: import a folder; every photo is queued by post-import-image and critiqued in the background
local dt = require "darktable"
local H = dofile(os.getenv("ASE_DT_HARNESS"))
local ase = require "ase/ase_critic"

H.run(function()
  local root = H.env("ASE_DT_TAG_ROOT")
  local folder = H.env("ASE_DT_FOLDER")
  local n = tonumber(H.env("ASE_DT_COUNT"))
  dt.database.import(folder)  -- a folder is imported by a background job: wait for its images
  local images = {}
  local function collect()
    images = {}
    for _, image in ipairs(dt.database) do
      if image.path == folder then table.insert(images, image) end
    end
    return #images >= n
  end
  H.wait(collect, 60)
  H.report("imported", #images)
  if #images < n then
    for i, image in ipairs(dt.database) do H.report("in_db." .. i, tostring(image)) end
    return
  end
  local function done()
    local k = 0
    for _, image in ipairs(images) do
      if ase.result_for(image) then k = k + 1 end
    end
    return k >= n
  end
  H.report("all_critiqued", H.wait(done, 90))
  H.wait(function() return not ase.busy() end, 30)
  for i, image in ipairs(images) do H.report_image("img" .. i, image, root, ase) end
end)
