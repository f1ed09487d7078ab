-- cull selection: the button starts a background job; once it is done, darktable's own grouping (the pick leads
-- the burst) and rejected flags show the decisions, and the panel shows the hovered image's reason
local dt = require "darktable"
local H = dofile(os.getenv("ASE_DT_HARNESS"))
local ase = require "ase/ase_critic"

H.run(function()
  local w = ase.widgets
  assert(w.cull_button and w.cull, "the cull button or its label is missing")
  local images = {}
  for _, path in ipairs(H.lines(H.env("ASE_DT_IMAGES"))) do
    local image = assert(dt.database.import(path), "import failed: " .. path)
    table.insert(images, image)
  end
  dt.gui.selection(images)

  -- cancelled at once (the job's cancel button does what cancel_all does for it): nothing is applied
  w.cull_button.clicked_callback(w.cull_button)
  -- once the job is in darktable's job list (the click only dispatches the work to a background thread)
  assert(H.wait(function() return ase.jobs_running() > 0 end, 30), "the cull job did not start")
  ase.cancel_all()
  assert(H.wait(function() return not ase.busy() end, 60), "the cancelled cull did not stop")
  H.report("cancel.status", w.status.label)
  local applied = 0
  for _, image in ipairs(images) do
    if ase.cull_for(image) or image.rating == -1 or #image:get_group_members() > 1 then applied = applied + 1 end
  end
  H.report("cancel.applied", applied)

  local t0 = os.time()
  w.cull_button.clicked_callback(w.cull_button)
  H.report("click_returned_s", os.time() - t0)
  H.report("busy_after_click", ase.busy())
  assert(H.wait(function() return not ase.busy() end, 120), "the cull did not finish")
  H.report("status", w.status.label)
  for _, image in ipairs(images) do
    local key = "img." .. image.filename
    local d = ase.cull_for(image)
    H.report(key .. ".decision", d and d.decision or "none")
    H.report(key .. ".reason", d and d.reason or "")
    H.report(key .. ".rating", image.rating)
    H.report(key .. ".leader", image.group_leader.filename)
    H.report(key .. ".group_size", #image:get_group_members())
    ase.display(image)  -- what the mouse-over-image-changed event does for the hovered image
    H.report(key .. ".panel", w.cull.tooltip)
  end

  -- the JSON decoder on hand-made text: escapes, \u (a surrogate pair too), nesting, null, numbers, garbage
  local v = ase.json_decode('{"a": [1, -2.5e1, true, null], "s": "x\\"y\\n\\u00e9\\ud83d\\ude00", "o": {}}')
  H.report("json.a", table.concat({ tostring(v.a[1]), tostring(v.a[2]), tostring(v.a[3]), tostring(v.a[4]) }, ","))
  H.report("json.s", v.s)
  H.report("json.bad", tostring(select(2, ase.json_decode('{"a": }')) ~= nil))
end)
