--[[
  Rates photos in a real darktable library (tests/darktable/test_personal_library.py): imports every photo
  listed in $ASE_DT_RATINGS (lines "path<TAB>rating"), sets its rating through the Lua API (-1: reject),
  reads it back, reports "rated.<file name>" = the rating darktable holds, then quits so the library.db is
  closed. No plugin: the harness only reports and quits.
]]

local dt = require "darktable"
local H = dofile(os.getenv("ASE_DT_HARNESS"))

H.run(function()
  local n = 0
  for line in io.lines(H.env("ASE_DT_RATINGS")) do
    local path, rating = line:match("^(.-)\t(%-?%d+)$")
    assert(path, "bad line: " .. line)
    local img = dt.database.import(path)
    assert(img, "darktable did not import " .. path)
    img.rating = tonumber(rating)
    H.report("rated." .. img.filename, img.rating)
    n = n + 1
  end
  H.report("count", n)
end, {wait_ready = false})
