-- learn from my ratings: rate the imported photos through darktable's Lua API, click the button (a background
-- ase-mllm learn on the collection's rated images), read the figures it shows; then critique with the profile the
-- learning set in the preferences and read the personal score in the panel
local dt = require "darktable"
local H = dofile(os.getenv("ASE_DT_HARNESS"))
local ase = require "ase/ase_critic"

H.run(function()
  local w = ase.widgets
  assert(w.learn_button and w.learn_result, "the learn button or its label is missing")
  local images = {}
  for line in io.lines(H.env("ASE_DT_RATINGS")) do
    local path, rating = line:match("^(.-)\t(%-?%d+)$")
    local image = assert(dt.database.import(path), "import failed: " .. path)
    image.rating = tonumber(rating)
    table.insert(images, image)
  end
  H.report("profile_before", dt.preferences.read("ase_critic", "profile", "string"))
  H.report("rated_in_collection", #ase.rated_images())

  w.learn_button.clicked_callback(w.learn_button)
  H.report("busy_after_click", ase.busy())
  assert(H.wait(function() return not ase.busy() end, 240), "learning did not finish")
  H.report("learn_result", w.learn_result.label)
  H.report("status", w.status.label)
  H.report("profile_after", dt.preferences.read("ase_critic", "profile", "string"))

  dt.gui.selection({ images[1] })
  w.critique_button.clicked_callback(w.critique_button)
  assert(H.wait(function() return not ase.busy() end, 120), "the critique did not finish")
  local res = ase.result_for(images[1])
  H.report("personal_score", res and res.personal_score or "none")
  ase.display(images[1])
  H.report("score_label", w.score.label)
end)
